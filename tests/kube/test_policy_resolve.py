"""Layering: cluster < pools (priority, then name) < node, field by field, with provenance."""

from __future__ import annotations

from typing import Any

from agent.policy.model import ColocationPolicy, parse_policy
from agent.policy.resolve import Layer, Source, resolve
from agent.policy.tracker import PolicyTracker, parse_document

from .objects import policy, pool

GPU = {"pool": "gpu"}
BIG = {"size": "big"}


def parsed(*bodies: dict[str, Any]) -> list[ColocationPolicy]:
    return [parse_policy(b, b["metadata"]["name"]) for b in bodies]


def cluster(**settings: Any) -> dict[str, Any]:
    return policy("cluster", {"scope": "Cluster", **settings})


def node_policy(name: str, nodes: list[str], **settings: Any) -> dict[str, Any]:
    return policy(name, {"scope": "Node", "nodeNames": nodes, **settings})


POLICIES = parsed(
    cluster(reclaim={"maxPercent": {"cpu": 60, "memory": 60}}, gpu={"reservePercent": 5}),
    pool("gpu", 100, GPU, reclaim={"maxPercent": {"cpu": 50}}, gpu={"reservePercent": 30}),
    pool("big", 10, BIG, reclaim={"maxPercent": {"cpu": 80, "memory": 75}}),
    node_policy("pin-n7", ["n7"], reclaim={"maxPercent": {"memory": 40}}),
)


def test_overlapping_pools_merge_by_priority_field_by_field() -> None:
    r = resolve(POLICIES, "n1", {**GPU, **BIG})
    max_percent = r.settings.reclaim.max_percent
    assert (max_percent.cpu, max_percent.memory) == (50, 75)  # gpu (100) beats big (10) on cpu only
    assert r.provenance["reclaim.maxPercent.cpu"] == Source(Layer.NODE_POOL, "gpu", 100)
    assert r.provenance["reclaim.maxPercent.memory"] == Source(Layer.NODE_POOL, "big", 10)
    assert r.provenance["reclaim.maxPercent.gpu"] == Source(Layer.BUILTIN, "built-in")
    assert r.settings.gpu.reserve_percent == 30
    assert [s.policy for s in r.applied] == ["cluster", "big", "gpu"]
    assert r.ties == ()


def test_node_policy_beats_every_pool() -> None:
    r = resolve(POLICIES, "n7", {**GPU, **BIG})
    assert r.settings.reclaim.max_percent.memory == 40
    assert str(r.provenance["reclaim.maxPercent.memory"]) == "Node pin-n7"
    assert r.settings.reclaim.max_percent.cpu == 50


def test_pools_that_do_not_select_the_node_do_not_apply() -> None:
    r = resolve(POLICIES, "n2", {"pool": "cpu"})
    assert [s.policy for s in r.applied] == ["cluster"]
    assert r.settings.reclaim.max_percent.cpu == 60
    assert str(r.provenance["reclaim.maxPercent.cpu"]) == "Cluster cluster"


def test_equal_priority_is_decided_by_name_and_reported() -> None:
    policies = parsed(
        pool("zeta", 10, GPU, eviction={"dryRun": True, "maxEvictions": 5}),
        pool("alpha", 10, GPU, eviction={"dryRun": False}),
    )
    r = resolve(policies, "n1", GPU)
    assert r.settings.eviction.dry_run is False  # alpha sorts first and wins
    assert r.settings.eviction.max_evictions == 5  # only zeta sets it: no tie
    assert len(r.ties) == 1
    tie = r.ties[0]
    assert (tie.field, tie.winner.policy, [s.policy for s in tie.losers]) == (
        "eviction.dryRun",
        "alpha",
        ["zeta"],
    )
    assert "first name wins" in str(tie)
    # Same inputs in another order: same answer.
    assert resolve(reversed(policies), "n1", GPU).settings == r.settings


def test_equal_values_are_not_a_tie() -> None:
    policies = parsed(
        pool("a", 10, GPU, gpu={"enabled": True}), pool("b", 10, GPU, gpu={"enabled": True})
    )
    assert resolve(policies, "n1", GPU).ties == ()


def test_atomic_settings_are_replaced_whole() -> None:
    policies = parsed(
        cluster(network={"tiers": {"batch": {"rate": "50Mbit", "ceil": "200Mbit"}}}),
        pool("gpu", 1, GPU, network={"tiers": {"batch": {"rate": "100Mbit"}}}),
    )
    batch = resolve(policies, "n1", GPU).settings.network.tiers.batch
    assert (batch.rate, batch.ceil) == ("100Mbit", None)  # ceil not inherited from the cluster


def test_tier_rules_list_is_replaced_and_becomes_qos_tier_settings() -> None:
    rules = [{"name": "spark", "tier": "batch", "namespaces": ["spark"]}]
    r = resolve(parsed(cluster(tiers={"rules": rules})), "n1", {})
    settings = r.settings.tiers.to_tier_settings()
    assert [rule.name for rule in settings.rules] == ["spark"]
    assert str(r.provenance["tiers.rules"]) == "Cluster cluster"


def test_workload_overrides_are_collected_strongest_first() -> None:
    payments = {
        "name": "payments",
        "podSelector": {"matchLabels": {"app": "pay"}},
        "tier": "dedicated",
    }
    gpu_jobs = {
        "name": "train",
        "podSelector": {"matchLabels": {"app": "train"}},
        "namespaces": ["ml"],
        "tier": "batch",
    }
    policies = parsed(cluster(workloads=[payments]), pool("gpu", 1, GPU, workloads=[gpu_jobs]))
    r = resolve(policies, "n1", GPU)
    assert [(w.override.name, w.source.policy) for w in r.workloads] == [
        ("train", "gpu"),
        ("payments", "cluster"),
    ]
    # They become the first tier rules of the brain's settings, in that order.
    rules = r.qos_settings().tiers.rules
    assert [rule.name for rule in rules[:2]] == ["workload train", "workload payments"]
    assert rules[0].namespaces == ("ml",) and str(rules[0].selector) == "app=train"


def test_inconsistent_merge_is_reported_with_its_sources() -> None:
    policies = parsed(
        cluster(network={"linkRate": "10Gbit", "tiers": {"online": {"rate": "8Gbit"}}}),
        node_policy("slow-nic", ["n1"], network={"linkRate": "1Gbit"}),
    )
    r = resolve(policies, "n1", {})
    assert not r.valid
    text = " ".join(r.problems)
    assert "above linkRate 1Gbit" in text
    assert "network.linkRate from Node slow-nic" in text
    assert "network.tiers.online from Cluster cluster" in text


def test_builtin_defaults_alone_are_consistent() -> None:
    assert resolve([], "n1", {}).valid


# --- last good (the pure part of the watcher) ------------------------------------------------


def doc(body: dict[str, Any], generation: int) -> Any:
    body = {**body, "metadata": {**body["metadata"], "generation": generation}}
    return parse_document(body)


def test_invalid_version_keeps_the_last_valid_one() -> None:
    tracker = PolicyTracker()
    good = doc(cluster(reclaim={"maxPercent": {"cpu": 55}}), 1)
    first = tracker.resolve({"cluster": good}, "n1", {})
    assert first.resolution.settings.reclaim.max_percent.cpu == 55

    broken = doc(cluster(reclaim={"maxPercent": {"cpu": 555}}), 2)
    assert broken.policy is None and "maxPercent.cpu" in broken.error
    second = tracker.resolve({"cluster": broken}, "n1", {})
    assert second.resolution.settings.reclaim.max_percent.cpu == 55
    assert not second.fallback
    assert second.invalid_objects == (
        "ColocationPolicy cluster generation 2 is invalid, keeping generation 1: "
        "spec.reclaim.maxPercent.cpu: 555 is not a percentage between 0 and 100",
    )


def test_never_valid_policy_is_ignored() -> None:
    tracker = PolicyTracker()
    broken = doc(pool("gpu", 1, GPU, gpu={"reservePercent": 200}), 1)
    current = tracker.resolve({"gpu": broken}, "n1", GPU)
    assert current.resolution.applied == ()
    assert "is invalid and ignored" in current.invalid_objects[0]


def test_inconsistent_merge_keeps_the_last_good_effective_policy() -> None:
    tracker = PolicyTracker()
    base = doc(cluster(network={"linkRate": "10Gbit", "tiers": {"online": {"rate": "8Gbit"}}}), 1)
    good = tracker.resolve({"cluster": base}, "n1", {})
    assert good.resolution.valid and not good.fallback
    slow = doc(node_policy("slow-nic", ["n1"], network={"linkRate": "1Gbit"}), 1)
    kept = tracker.resolve({"cluster": base, "slow-nic": slow}, "n1", {})
    assert kept.fallback
    assert kept.resolution is good.resolution
    assert kept.merge_problems and kept.merge_problems[0].startswith("node n1: network:")


def test_deleted_policy_stops_applying() -> None:
    tracker = PolicyTracker()
    tracker.resolve({"cluster": doc(cluster(gpu={"reservePercent": 40}), 1)}, "n1", {})
    after = tracker.resolve({}, "n1", {})
    assert after.resolution.settings.gpu.reserve_percent == 10
    # ...and an invalid object of the same name later is "never valid", not resurrected.
    broken = doc(cluster(gpu={"reservePercent": 500}), 1)
    assert tracker.resolve({"cluster": broken}, "n1", {}).resolution.applied == ()


def test_network_section_maps_onto_shaping_settings_in_base_units() -> None:
    from qos.tiers import Tier

    policies = parsed(
        cluster(network={"enabled": True, "linkRate": "9Gbit", "batchMargin": "200Mbit"}),
        node_policy("n7-uplink", ["n7"], network={
            "uplink": "bond0", "tiers": {"batch": {"rate": "100Mbit", "ceil": "8Gbit"}},
        }),
    )  # fmt: skip
    net = resolve(policies, "n7", {}).network_settings()
    assert (net.enabled, net.uplink, net.link_rate_bps, net.margin_bps) == (
        True, "bond0", 9 * 10**9, 200 * 10**6,
    )  # fmt: skip
    assert (net.tiers[Tier.BATCH].rate_bps, net.tiers[Tier.BATCH].ceil_bps) == (10**8, 8 * 10**9)
    assert net.tiers[Tier.ONLINE].rate_bps == 700 * 10**6  # the built-in layer's
    assert net.ifb == "colocd-ifb0" and not net.take_over
    off = resolve(parsed(cluster()), "n1", {}).network_settings()
    assert not off.enabled and off.uplink is None  # the built-in: off, default route
