"""QosSettings: defaults, validation, and tier rules given as plain data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qos.settings import CpuMechanism, Indicator, QosSettings
from qos.tiers import Tier, classify
from tests.qos_builders import pod


def test_defaults_are_valid_and_follow_the_design():
    s = QosSettings()
    assert s.predictor.window_seconds == 3 * 3600  # tuned on examples/traces
    assert s.predictor.percentile == 1.0
    assert s.predictor.cold_start_seconds == 2 * 3600
    assert s.margin.indicator is Indicator.CPU_PSI
    assert s.margin.effective_target == 20.0  # tuned on examples/traces
    assert s.cpu.idle is True
    assert s.cpu.mechanism is CpuMechanism.AUTO  # measured: bench_reaction.py
    assert s.eviction.enabled and not s.eviction.dry_run


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"bogus": 1}, "bogus"),
        ({"margin": {"kp": -1}}, "margin.kp"),
        ({"margin": {"min_fraction": 0.6, "max_fraction": 0.5}}, "margin"),
        ({"margin": {"initial_fraction": 0.9}}, "margin"),
        ({"margin": {"indicator": "latency"}}, "margin"),
        ({"margin": {"target": float("nan")}}, "margin.target"),
        ({"reclaim": {"cpu_max_fraction": 1.5}}, "reclaim.cpu_max_fraction"),
        ({"reclaim": {"stale_after_seconds": 0}}, "reclaim.stale_after_seconds"),
        ({"memory": {"online_min_fraction": 0.9, "online_low_fraction": 0.5}}, "memory"),
        ({"cpu": {"mechanism": "freeze"}}, "cpu.mechanism"),
        ({"tiers": {"rules": [{"name": "x", "tier": "gold"}]}}, "tiers.rules.0.tier"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(overrides, where):
    with pytest.raises(ValidationError) as err:
        QosSettings.model_validate(overrides)
    first = err.value.errors()[0]
    assert ".".join(str(p) for p in first["loc"]).startswith(where)


def test_settings_are_frozen():
    s = QosSettings()
    with pytest.raises(ValidationError):
        s.margin.kp = 2.0  # type: ignore[misc]


def test_latency_indicator_takes_its_target_in_its_own_unit():
    s = QosSettings.model_validate({"margin": {"indicator": "latency", "target": 0.025}})
    assert s.margin.effective_target == 0.025


def test_tier_rules_from_plain_data_drive_classify():
    s = QosSettings.model_validate(
        {
            "tiers": {
                "rules": [
                    {"name": "analytics", "tier": "batch", "namespaces": ["default"]},
                ]
            }
        }
    )
    decision = classify(pod("report", cpu="1", memory=2**30), s.tiers)
    assert decision.tier is Tier.BATCH
    assert "analytics" in decision.reason
