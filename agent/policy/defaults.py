"""The built-in layer: what a node gets for every field no ColocationPolicy sets.

Every mergeable field is set here (a test checks it), so a resolved policy is always
complete. Tier rules and QoS-class defaults come from `qos.tiers` so there is one source.
Values follow the peers' published defaults where one exists: Koordinator's 60 %/65 %
reclaim thresholds, 70 % memory eviction with 2 % hysteresis, 10 %/5 min node updates.
"""

from __future__ import annotations

from agent.policy.model import (
    CpuIsolation,
    EvictionSpec,
    GpuSpec,
    IsolationSpec,
    MarginPercent,
    MemoryIsolation,
    NetworkSpec,
    NetworkTiers,
    NodeResourcesSpec,
    PidSpec,
    PolicySettings,
    PredictorSpec,
    QosClassDefaults,
    ReclaimSpec,
    ReservedResources,
    ResourcePercents,
    ShapingClass,
    TierRuleSpec,
    TiersSpec,
)
from qos.k8s_qos import QOSClass
from qos.tiers import DEFAULT_TIER_SETTINGS

_FALLBACK = dict(DEFAULT_TIER_SETTINGS.fallback)

BUILTIN = PolicySettings(
    tiers=TiersSpec(
        rules=[TierRuleSpec.from_rule(r) for r in DEFAULT_TIER_SETTINGS.rules],
        qos_class_defaults=QosClassDefaults(
            guaranteed=_FALLBACK[QOSClass.GUARANTEED],
            burstable=_FALLBACK[QOSClass.BURSTABLE],
            best_effort=_FALLBACK[QOSClass.BEST_EFFORT],
        ),
    ),
    reclaim=ReclaimSpec(
        enabled=True,
        max_percent=ResourcePercents(cpu=60, memory=65, gpu=50),
        reserved=ReservedResources(cpu="500m", memory="1Gi"),
        degrade_after="1m",
    ),
    predictor=PredictorSpec(
        window="5m",
        percentile=95.0,
        pid=PidSpec(
            enabled=True,
            indicator="cpuPressure",
            target=5.0,
            kp=0.5,
            ki=0.05,
            kd=0.0,
            margin_percent=MarginPercent(min=5, max=50),
            max_step_percent=10,
        ),
    ),
    isolation=IsolationSpec(
        cpu=CpuIsolation(suppress="cpuset", batch_idle=True),
        memory=MemoryIsolation(online_min_percent=0, online_low_percent=100, batch_high_percent=90),
    ),
    network=NetworkSpec(
        enabled=False,
        link_rate="950Mbit",
        tiers=NetworkTiers(
            system=ShapingClass(rate="50Mbit", ceil="950Mbit"),
            online=ShapingClass(rate="700Mbit", ceil="950Mbit"),
            batch=ShapingClass(rate="50Mbit", ceil="200Mbit"),
        ),
    ),
    gpu=GpuSpec(enabled=False, reserve_percent=20),
    eviction=EvictionSpec(
        enabled=True,
        dry_run=False,
        memory_threshold_percent=70,
        memory_hysteresis_percent=2,
        cpu_starvation_percent=60,
        sustained_for="30s",
        cool_down="20s",
        max_per_minute=2,
    ),
    node_resources=NodeResourcesSpec(
        change_threshold_percent=10, min_interval="1m", max_interval="5m"
    ),
)
