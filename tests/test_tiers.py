"""Tier classification: order of rules, dedicated qualification, reasons."""

from __future__ import annotations

import pytest

from qos.errors import TierAnnotationError
from qos.selector import LabelSelector, Operator, Requirement
from qos.tiers import Tier, TierRule, TierSettings, classify
from tests.builders import c, pod

FULL = {"cpu": "2", "memory": "1Gi"}
HALF = {"cpu": "1500m", "memory": "1Gi"}


def ann(tier: str) -> dict:
    return {"annotations": {"colocd.io/tier": tier}}


CASES = [
    ("besteffort falls back to batch", pod(c()), Tier.BATCH, "QoS class BestEffort"),
    ("burstable falls back to online", pod(c(requests={"cpu": "1"})), Tier.ONLINE, "Burstable"),
    ("annotation wins over qos", pod(c(), **ann("online")), Tier.ONLINE, "annotation"),
    ("annotation is case-insensitive", pod(c(), **ann("Batch")), Tier.BATCH, "annotation"),
    (
        "dedicated granted to guaranteed whole cores",
        pod(c(requests=FULL, limits=FULL), **ann("dedicated")),
        Tier.DEDICATED,
        "annotation colocd.io/tier=dedicated",
    ),
    (
        "dedicated refused for fractional cpu",
        pod(c(requests=HALF, limits=HALF), **ann("dedicated")),
        Tier.ONLINE,
        "dedicated needs whole CPUs, container app requests cpu 1.5",
    ),
    (
        "dedicated refused for burstable",
        pod(c(requests={"cpu": "2"}), **ann("dedicated")),
        Tier.ONLINE,
        "dedicated needs Guaranteed QoS, pod is Burstable",
    ),
    (
        "batch resources beat qos",
        pod(c(requests={"cpu": "1", "colocd.io/batch-cpu": "1000"})),
        Tier.BATCH,
        "requests colocd.io/batch-cpu",
    ),
    (
        "annotation beats batch resources",
        pod(c(requests={"colocd.io/batch-memory": "1Gi"}), **ann("online")),
        Tier.ONLINE,
        "annotation",
    ),
    (
        "kube-system is system",
        pod(c(), namespace="kube-system"),
        Tier.SYSTEM,
        "rule 'system-namespaces': namespace kube-system",
    ),
    (
        "system priority class is system",
        pod(c(), priority=2_000_001_000),
        Tier.SYSTEM,
        "priority 2000001000 >= 2000000000",
    ),
    (
        "batch resources beat system rules",
        pod(c(requests={"colocd.io/batch-cpu": "1"}), namespace="kube-system"),
        Tier.BATCH,
        "requests",
    ),
]


@pytest.mark.parametrize(("case", "subject", "tier", "reason"), CASES, ids=[x[0] for x in CASES])
def test_classify(case, subject, tier, reason):
    decision = classify(subject)
    assert decision.tier is tier
    assert reason in decision.reason
    assert "\n" not in decision.reason


def test_unknown_annotation_is_an_error_when_strict():
    with pytest.raises(TierAnnotationError, match="'gold' is not one of"):
        classify(pod(c(), **ann("gold")), strict=True)


def test_unknown_annotation_falls_through_with_a_warning_in_the_agent():
    decision = classify(pod(c(), **ann("gold")))
    assert decision.tier is Tier.BATCH
    assert "ignored" in decision.warnings[0]


BANDS = TierSettings(
    rules=(
        TierRule("prod", Tier.ONLINE, min_priority=9000, max_priority=9999),
        TierRule("free", Tier.BATCH, min_priority=3000, max_priority=3999),
        TierRule("ml", Tier.BATCH, namespaces=("ml",)),
        TierRule(
            "cache",
            Tier.DEDICATED,
            selector=LabelSelector(
                match_labels=(("app", "redis"),),
                match_expressions=(Requirement("env", Operator.IN, ("prod",)),),
            ),
        ),
    )
)

RULE_CASES = [
    ("priority in prod band", pod(c(), priority=9500), Tier.ONLINE, "rule 'prod'"),
    ("priority in free band", pod(c(requests=FULL), priority=3500), Tier.BATCH, "rule 'free'"),
    ("priority outside bands", pod(c(), priority=5000), Tier.BATCH, "QoS class"),
    ("no priority matches no band", pod(c(requests=FULL)), Tier.ONLINE, "QoS class"),
    ("namespace rule", pod(c(requests=FULL), namespace="ml"), Tier.BATCH, "namespace ml"),
    (
        "selector rule grants dedicated",
        pod(c(requests=FULL, limits=FULL), labels={"app": "redis", "env": "prod"}),
        Tier.DEDICATED,
        "labels match app=redis,env in (prod)",
    ),
    (
        "selector rule misses on expression",
        pod(c(requests=FULL, limits=FULL), labels={"app": "redis", "env": "dev"}),
        Tier.ONLINE,
        "QoS class",
    ),
]


@pytest.mark.parametrize(
    ("case", "subject", "tier", "reason"), RULE_CASES, ids=[x[0] for x in RULE_CASES]
)
def test_policy_rules(case, subject, tier, reason):
    decision = classify(subject, BANDS)
    assert decision.tier is tier
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("op", "values", "labels", "expected"),
    [
        (Operator.IN, ("a",), {"k": "a"}, True),
        (Operator.IN, ("a",), {}, False),
        (Operator.NOT_IN, ("a",), {}, True),
        (Operator.NOT_IN, ("a",), {"k": "a"}, False),
        (Operator.EXISTS, (), {"k": ""}, True),
        (Operator.DOES_NOT_EXIST, (), {"k": ""}, False),
    ],
)
def test_selector_operators(op, values, labels, expected):
    assert (
        LabelSelector(match_expressions=(Requirement("k", op, values),)).matches(labels) is expected
    )
