"""From the effective policy to the settings the brain and the node publisher run on."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic.alias_generators import to_camel

from agent.act.node_resources import PublishSettings
from agent.policy.load import load_policies
from agent.policy.model import parse_policy
from agent.policy.resolve import field_paths, resolve
from agent.policy.to_settings import FIELDS, PUBLISH_FIELDS
from qos.settings import DEFAULT_QOS_SETTINGS, CpuMechanism, Indicator, QosSettings

from .objects import policy

EXAMPLES = str(Path(__file__).resolve().parents[2] / "deploy" / "examples")

CUSTOM = {
    "scope": "Cluster",
    "tiers": {
        "rules": [{"name": "spark", "tier": "batch", "namespaces": ["spark"]}],
        "qosClassDefaults": {"burstable": "batch"},
    },
    "reclaim": {
        "maxPercent": {"cpu": 85, "memory": 80, "gpu": 70},
        "reserved": {"cpu": "1500m", "memory": "2Gi"},
        "kubeletEvictionMemory": "500Mi",
        "memoryMarginPercent": 5,
        "staleAfter": "15s",
        "degradeOver": "0s",
    },
    "predictor": {"window": "10m", "percentile": 99.5},
    "margin": {
        "indicator": {"type": "cfsThrottling", "target": 0.1},
        "kp": 0.2,
        "ki": 0.02,
        "kd": 0.01,
        "boundsPercent": {"min": 10, "max": 60},
        "initialPercent": 30,
        "maxStepUpPercent": 20,
        "shrinkPercentPerSecond": 0.5,
    },
    "isolation": {
        "cpu": {
            "suppress": "idle-only",
            "batchIdle": False,
            "minBatchCpus": 2,
            "minBatchQuota": "250m",
            "dedicatedCpusets": False,
        },
        "memory": {
            "enabled": False,
            "onlineMinPercent": 25,
            "onlineLowPercent": 75,
            "batchHighPercent": 80,
        },
    },
    "gpu": {"enabled": False, "reservePercent": 30},
    "eviction": {
        "enabled": False,
        "dryRun": True,
        "memoryPressurePercent": 15,
        "memoryPressureHysteresisPercent": 3,
        "memoryUsagePercent": 90,
        "memoryUsageHysteresisPercent": 5,
        "sustainedFor": "30s",
        "cpuStarvationPercent": 50,
        "starvationFor": "2m",
        "coolDown": "1m",
        "maxEvictions": 1,
        "rateWindow": "10m",
    },
    "nodeResources": {"changeThresholdPercent": 20, "minInterval": "30s", "maxInterval": "10m"},
}


def test_builtin_layer_is_exactly_the_brains_defaults() -> None:
    builtin = resolve([], "n1", {})
    assert builtin.qos_settings() == DEFAULT_QOS_SETTINGS
    assert builtin.publish_settings() == PublishSettings()


def test_every_field_reaches_the_settings_in_base_units() -> None:
    r = resolve([parse_policy(policy("custom", CUSTOM), "custom")], "n1", {})
    assert r.valid, r.problems
    q = r.qos_settings()
    assert [rule.name for rule in q.tiers.rules] == ["spark"]
    assert [t.value for _, t in q.tiers.fallback] == ["online", "batch", "batch"]
    assert (q.reclaim.cpu_max_fraction, q.reclaim.memory_max_fraction) == (0.85, 0.8)
    assert q.reclaim.gpu_max_fraction == 0.7
    assert q.reclaim.reserved_system_cpu_milli == 1500
    assert q.reclaim.reserved_system_memory_bytes == 2 << 30
    assert q.reclaim.kubelet_eviction_memory_bytes == 500 << 20
    assert q.reclaim.memory_margin_fraction == 0.05
    assert (q.reclaim.stale_after_seconds, q.reclaim.degrade_seconds) == (15.0, 0.0)
    assert (q.predictor.window_seconds, q.predictor.percentile) == (600.0, 0.995)
    m = q.margin
    assert (m.indicator, m.target) == (Indicator.THROTTLING, 0.1)
    assert (m.kp, m.ki, m.kd) == (0.2, 0.02, 0.01)
    assert (m.min_fraction, m.max_fraction, m.initial_fraction) == (0.1, 0.6, 0.3)
    assert (m.max_step_up_fraction, m.shrink_per_second) == (0.2, 0.005)
    assert q.cpu.mechanism is CpuMechanism.IDLE_ONLY
    assert (q.cpu.idle, q.cpu.cpuset_min_cpus, q.cpu.quota_min_milli) == (False, 2, 250)
    assert q.cpu.dedicated_cpusets is False
    assert q.memory.enabled is False
    assert (q.memory.online_min_fraction, q.memory.online_low_fraction) == (0.25, 0.75)
    assert q.memory.batch_high_fraction == 0.8
    assert (q.gpu.enabled, q.gpu.reserve_fraction) == (False, 0.3)
    e = q.eviction
    assert (e.enabled, e.dry_run) == (False, True)
    assert (e.memory_psi_threshold, e.memory_psi_hysteresis) == (15, 3)
    assert (e.memory_usage_threshold, e.memory_usage_hysteresis) == (0.9, 0.05)
    assert (e.sustained_seconds, e.starvation_fraction, e.starvation_seconds) == (30, 0.5, 120)
    assert (e.cooldown_seconds, e.max_evictions, e.rate_window_seconds) == (60, 1, 600)
    publish = r.publish_settings()
    assert (publish.change_threshold, publish.min_interval_s, publish.max_interval_s) == (
        0.2,
        30.0,
        600.0,
    )


def test_the_default_indicator_target_is_the_brains() -> None:
    spec = {"scope": "Cluster", "margin": {"indicator": {"type": "cfsThrottling"}}}
    q = resolve([parse_policy(policy("p", spec), "p")], "n1", {}).qos_settings()
    assert q.margin.target is None and q.margin.effective_target == 0.05


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"margin": {"initialPercent": 70}}, "margin.initialPercent 70 is outside"),
        (
            {"eviction": {"memoryUsageHysteresisPercent": 96}},
            "eviction.memoryUsageHysteresisPercent 96 must be below eviction.memoryUsagePercent 95",
        ),
        (
            {"isolation": {"memory": {"onlineMinPercent": 100, "onlineLowPercent": 80}}},
            "isolation.memory.onlineMinPercent 100 must be at most",
        ),
        ({"predictor": {"percentile": 0}}, "the resulting settings are refused"),
    ],
)
def test_settings_the_brain_would_refuse_are_a_resolution_problem(
    settings: dict, problem: str
) -> None:
    r = resolve([parse_policy(policy("p", {"scope": "Cluster", **settings}), "p")], "n1", {})
    assert not r.valid
    assert problem in r.problems[0]


def test_shipped_examples_map_onto_the_brain() -> None:
    loaded = load_policies([EXAMPLES])
    r = resolve(
        [p.policy for p in loaded.policies], "gpu-node-7", {"nvidia.com/gpu.present": "true"}
    )
    q = r.qos_settings()
    assert q.reclaim.gpu_max_fraction == 0.6  # the node override
    assert q.reclaim.cpu_max_fraction == 0.75  # the GPU pool
    assert q.eviction.dry_run is True
    assert q.gpu.reserve_fraction == 0.3
    assert [rule.name for rule in q.tiers.rules[:2]] == ["workload payments", "workload reports"]


def test_the_mapping_table_leaves_no_field_out() -> None:
    mapped = [to_camel_path(p) for p, _, _ in (*FIELDS, *PUBLISH_FIELDS)]
    own = ("tiers.", "network.")  # tiers are converted whole; shaping is not the brain's
    unmapped = [
        f
        for f in field_paths()
        if not f.startswith(own) and not any(m == f or m.startswith(f + ".") for m in mapped)
    ]
    assert unmapped == []
    # Not policy knobs (step_factor and cold_start_gap_seconds are memory's rules, set from
    # memoryBurstFactor and coldStartMemoryGap).
    internal = {
        "predictor.max_samples",
        "predictor.step_factor",
        "predictor.cold_start_gap_seconds",
        "margin.max_dt_seconds",
    }
    brain = {
        f"{section}.{name}"
        for section, info in QosSettings.model_fields.items()
        if section != "tiers"
        for name in info.annotation.model_fields
    }
    assert brain - internal == {s for _, s, _ in FIELDS}
    assert set(PublishSettings.__dataclass_fields__) - {"jitter", "min_step"} == {
        s for _, s, _ in PUBLISH_FIELDS
    }


def to_camel_path(path: str) -> str:
    return ".".join(to_camel(part) for part in path.split("."))
