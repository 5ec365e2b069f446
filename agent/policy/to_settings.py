"""From an effective ColocationPolicy to the settings each part of colocd runs on, and back.

- `to_qos_settings`: the brain's `qos.settings.QosSettings` (base units: millicores, bytes,
  seconds, fractions of 1). Workload overrides that set a tier become the first tier rules.
- `to_publish_settings`: the node publisher's `PublishSettings` (`nodeResources`).
- `from_settings`: the other way, so the built-in policy layer is *derived* from the
  brain's and the publisher's own defaults and they can never disagree.

One table (`FIELDS`, `PUBLISH_FIELDS`) lists every field both ways, with its unit
conversion; a test checks that no field of either side is left out.

Settings the policy does not expose keep the brain's defaults (the predictor's sample cap,
the margin controller's longest time step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING
from typing import Any

from agent.act.node_resources import PublishSettings
from agent.policy.model import (
    PolicySettings,
    QosClassDefaults,
    TierRuleSpec,
    TiersSpec,
    WorkloadOverride,
)
from agent.sources.quantity import parse_quantity
from agent.sources.units import format_duration, parse_duration
from qos.k8s_qos import QOSClass
from qos.settings import CpuMechanism, Indicator, QosSettings
from qos.tiers import TierRule, TierSettings

_INDICATORS = {
    "cpuPressure": Indicator.CPU_PSI,
    "cfsThrottling": Indicator.THROTTLING,
    "latency": Indicator.LATENCY,
}
_INDICATOR_NAMES = {v: k for k, v in _INDICATORS.items()}


# --- units -------------------------------------------------------------------------------


def _fraction(percent: float) -> float:
    return percent / 100


def _tidy(value: float) -> int | float:
    """60.0 -> 60, so policies read as people write them."""
    return int(value) if value == int(value) else value


def _percent(fraction: float) -> int | float:
    return _tidy(round(fraction * 100, 9))


def _millicores(quantity: str) -> int:
    return int((parse_quantity(quantity) * 1000).to_integral_value(ROUND_CEILING))


def _bytes(quantity: str) -> int:
    return int(parse_quantity(quantity).to_integral_value(ROUND_CEILING))


def _cpu_text(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def _memory_text(size: int) -> str:
    for suffix, unit in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


# --- one table, both ways ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Conversion:
    to_settings: Callable[[Any], Any]
    to_policy: Callable[[Any], Any]


_SAME = _Conversion(lambda v: v, lambda v: v)
_NUMBER = _Conversion(lambda v: v, _tidy)
_PERCENT = _Conversion(_fraction, _percent)
_DURATION = _Conversion(parse_duration, format_duration)
_MILLICORES = _Conversion(_millicores, _cpu_text)
_BYTES = _Conversion(_bytes, _memory_text)
_INDICATOR = _Conversion(_INDICATORS.__getitem__, _INDICATOR_NAMES.__getitem__)
_MECHANISM = _Conversion(CpuMechanism, lambda v: v.value)
_LIST = _Conversion(tuple, list)

# (field of PolicySettings, field of QosSettings, conversion), as attribute paths.
FIELDS: tuple[tuple[str, str, _Conversion], ...] = (
    ("predictor.window", "predictor.window_seconds", _DURATION),
    ("predictor.percentile", "predictor.percentile", _PERCENT),
    ("predictor.burst_factor", "predictor.burst_factor", _NUMBER),
    ("predictor.burst_half_life", "predictor.burst_half_life_seconds", _DURATION),
    ("predictor.cold_start_cpu_percent", "predictor.cold_start_cpu_fraction", _PERCENT),
    ("predictor.cold_start_memory_percent", "predictor.cold_start_memory_fraction", _PERCENT),
    ("predictor.cold_start_for", "predictor.cold_start_seconds", _DURATION),
    ("predictor.regime_ratio", "predictor.regime_ratio", _NUMBER),
    ("predictor.regime_min_percent", "predictor.regime_min_fraction", _PERCENT),
    ("predictor.memory_window", "predictor.memory_window_seconds", _DURATION),
    ("predictor.memory_burst_factor", "predictor.memory_burst_factor", _NUMBER),
    ("predictor.cold_start_memory_for", "predictor.cold_start_memory_seconds", _DURATION),
    ("predictor.cold_start_memory_gap", "predictor.cold_start_memory_gap_seconds", _DURATION),
    ("margin.indicator.type", "margin.indicator", _INDICATOR),
    ("margin.indicator.target", "margin.target", _SAME),
    ("margin.kp", "margin.kp", _SAME),
    ("margin.ki", "margin.ki", _SAME),
    ("margin.kd", "margin.kd", _SAME),
    ("margin.bounds_percent.min", "margin.min_fraction", _PERCENT),
    ("margin.bounds_percent.max", "margin.max_fraction", _PERCENT),
    ("margin.initial_percent", "margin.initial_fraction", _PERCENT),
    ("margin.max_step_up_percent", "margin.max_step_up_fraction", _PERCENT),
    ("margin.shrink_percent_per_second", "margin.shrink_per_second", _PERCENT),
    ("reclaim.max_percent.cpu", "reclaim.cpu_max_fraction", _PERCENT),
    ("reclaim.max_percent.memory", "reclaim.memory_max_fraction", _PERCENT),
    ("reclaim.max_percent.gpu", "reclaim.gpu_max_fraction", _PERCENT),
    ("reclaim.reserved.cpu", "reclaim.reserved_system_cpu_milli", _MILLICORES),
    ("reclaim.reserved.memory", "reclaim.reserved_system_memory_bytes", _BYTES),
    ("reclaim.kubelet_eviction_memory", "reclaim.kubelet_eviction_memory_bytes", _BYTES),
    ("reclaim.memory_margin_percent", "reclaim.memory_margin_fraction", _PERCENT),
    ("reclaim.stale_after", "reclaim.stale_after_seconds", _DURATION),
    ("reclaim.degrade_over", "reclaim.degrade_seconds", _DURATION),
    ("isolation.cpu.batch_idle", "cpu.idle", _SAME),
    ("isolation.cpu.suppress", "cpu.mechanism", _MECHANISM),
    ("isolation.cpu.min_batch_cpus", "cpu.cpuset_min_cpus", _SAME),
    ("isolation.cpu.min_batch_quota", "cpu.quota_min_milli", _MILLICORES),
    ("isolation.cpu.dedicated_cpusets", "cpu.dedicated_cpusets", _SAME),
    ("isolation.memory.enabled", "memory.enabled", _SAME),
    ("isolation.memory.online_min_percent", "memory.online_min_fraction", _PERCENT),
    ("isolation.memory.online_low_percent", "memory.online_low_fraction", _PERCENT),
    ("isolation.memory.batch_high_percent", "memory.batch_high_fraction", _PERCENT),
    ("isolation.io.enabled", "io.enabled", _SAME),
    ("isolation.io.online_weight", "io.online_weight", _SAME),
    ("isolation.io.batch_weight", "io.batch_weight", _SAME),
    ("isolation.io.batch_max.read_bps", "io.batch_read_bps", _BYTES),
    ("isolation.io.batch_max.write_bps", "io.batch_write_bps", _BYTES),
    ("isolation.io.batch_max.read_iops", "io.batch_read_iops", _SAME),
    ("isolation.io.batch_max.write_iops", "io.batch_write_iops", _SAME),
    ("isolation.io.devices", "io.devices", _LIST),
    ("eviction.enabled", "eviction.enabled", _SAME),
    ("eviction.dry_run", "eviction.dry_run", _SAME),
    ("eviction.memory_pressure_percent", "eviction.memory_psi_threshold", _NUMBER),
    ("eviction.memory_pressure_hysteresis_percent", "eviction.memory_psi_hysteresis", _NUMBER),
    ("eviction.memory_usage_percent", "eviction.memory_usage_threshold", _PERCENT),
    ("eviction.memory_usage_hysteresis_percent", "eviction.memory_usage_hysteresis", _PERCENT),
    ("eviction.sustained_for", "eviction.sustained_seconds", _DURATION),
    ("eviction.cpu_starvation_percent", "eviction.starvation_fraction", _PERCENT),
    ("eviction.starvation_for", "eviction.starvation_seconds", _DURATION),
    ("eviction.cool_down", "eviction.cooldown_seconds", _DURATION),
    ("eviction.max_evictions", "eviction.max_evictions", _SAME),
    ("eviction.rate_window", "eviction.rate_window_seconds", _DURATION),
    ("gpu.enabled", "gpu.enabled", _SAME),
    ("gpu.reserve_percent", "gpu.reserve_fraction", _PERCENT),
    ("gpu.busy_target_percent", "gpu.busy_target_percent", _NUMBER),
    ("gpu.max_margin_percent", "gpu.max_margin_fraction", _PERCENT),
    ("gpu.freeze_utilization_percent", "gpu.freeze_utilization_percent", _NUMBER),
    ("gpu.freeze_memory_percent", "gpu.freeze_memory_fraction", _PERCENT),
    ("gpu.thaw_hysteresis_percent", "gpu.thaw_hysteresis_percent", _NUMBER),
    ("gpu.thaw_after", "gpu.thaw_after_seconds", _DURATION),
    ("gpu.max_frozen", "gpu.max_frozen_seconds", _DURATION),
)
PUBLISH_FIELDS: tuple[tuple[str, str, _Conversion], ...] = (
    ("node_resources.change_threshold_percent", "change_threshold", _PERCENT),
    ("node_resources.min_interval", "min_interval_s", _DURATION),
    ("node_resources.max_interval", "max_interval_s", _DURATION),
)


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _put(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _convert(
    source: Any, fields: tuple[tuple[str, str, _Conversion], ...], forward: bool
) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for policy_path, settings_path, conversion in fields:
        if forward:
            _put(tree, settings_path, conversion.to_settings(_get(source, policy_path)))
        else:
            _put(tree, policy_path, conversion.to_policy(_get(source, settings_path)))
    return tree


# --- policy -> settings ------------------------------------------------------------------------


def _tiers(tiers: TiersSpec, workloads: Iterable[WorkloadOverride]) -> TierSettings:
    base = tiers.to_tier_settings()
    overrides = tuple(
        TierRule(
            name=f"workload {w.name}",
            tier=w.tier,
            namespaces=tuple(w.namespaces or ()),
            selector=w.pod_selector.selector,
        )
        for w in workloads
    )
    return TierSettings(rules=overrides + base.rules, fallback=base.fallback)


def to_qos_settings(
    settings: PolicySettings, workloads: Iterable[WorkloadOverride] = ()
) -> QosSettings:
    """The brain's settings for a complete (resolved) policy; `workloads` strongest first.
    Raises pydantic's ValidationError when the brain refuses the combination."""
    tree = _convert(settings, FIELDS, forward=True)
    return QosSettings.model_validate({**tree, "tiers": _tiers(settings.tiers, workloads)})


def to_publish_settings(settings: PolicySettings) -> PublishSettings:
    return PublishSettings(**_convert(settings, PUBLISH_FIELDS, forward=True))


# --- settings -> policy (the built-in layer) ---------------------------------------------------


def from_settings(qos: QosSettings, publish: PublishSettings) -> PolicySettings:
    """The policy fields that reproduce `qos` and `publish` exactly (network not included)."""
    fallback = dict(qos.tiers.fallback)
    tree = _convert(qos, FIELDS, forward=False)
    tree.update(_convert(publish, PUBLISH_FIELDS, forward=False))
    tree["tiers"] = TiersSpec(
        rules=[TierRuleSpec.from_rule(rule) for rule in qos.tiers.rules],
        qos_class_defaults=QosClassDefaults(
            guaranteed=fallback[QOSClass.GUARANTEED],
            burstable=fallback[QOSClass.BURSTABLE],
            best_effort=fallback[QOSClass.BEST_EFFORT],
        ),
    )
    return PolicySettings.model_validate(tree)
