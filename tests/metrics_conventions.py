"""What colocd's metrics exposition must look like (Prometheus naming conventions), checked on
text in the exposition format: the agent's own /metrics, or a registry's `generate_latest`.

- every family is `colocd_<subsystem>_<name>[_<unit>]` with help text;
- counters' samples end in `_total`, nothing else does;
- units are base units and said in the name: a CPU amount in `_cores` (or a `_ratio`),
  memory in `_bytes`, GPUs in `_devices`, time in `_seconds`, and no `ms`, `millicores`,
  `mib`, `percent` anywhere;
- labels come from fixed vocabularies drawn from the code (tiers, resources, the knob
  table, outcomes, ...), so no label can carry a pod name, a UID or a path;
  `colocd_agent_info` alone names the node and the version, in a single sample.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agent.act.evictor import EvictionResult
from agent.report.metrics import (
    DEGRADED_REASONS,
    EVICTION_MODES,
    FAST_MODES,
    FAST_TRIGGERS,
    GPU_EVICTION_REASONS,
    GPU_INDICES,
    MAPPING_CHECKS,
    TICK_RESULTS,
)
from isolation.executor import Outcome
from isolation.knobs import KNOBS
from qos.budget import Resource
from qos.network import CEILING_REASONS, DIRECTIONS
from qos.settings import Indicator
from qos.tiers import Tier

__all__ = ["VOCABULARY", "problems"]

FAMILY = re.compile(r"^colocd_[a-z]+_[a-z0-9_]+$")
# Scaled or non-base units: Prometheus wants seconds, bytes, ratios.
NOT_BASE_UNITS = {
    "ms",
    "milliseconds",
    "us",
    "microseconds",
    "minutes",
    "hours",
    "millicores",
    "kb",
    "mb",
    "kib",
    "mib",
    "gib",
    "kilobytes",
    "megabytes",
    "percent",
}
# A word in the name -> the endings a name with it may have.
UNIT_FOR = {
    "cpu": ("_cores", "_ratio", "_seconds", "_seconds_total"),
    "memory": ("_bytes",),
    "gpu": ("_devices", "_bytes"),  # GPU memory is bytes
    "timestamp": ("_timestamp_seconds",),
    "duration": ("_seconds",),
    "reaction": ("_seconds",),
    "latency": ("_seconds",),
}
HISTOGRAM_UNITS = ("_seconds", "_bytes")

# Every value each label may take, from the code that sets it.
VOCABULARY: dict[str, set[str]] = {
    "tier": {t.value for t in Tier},
    "resource": {r.value for r in Resource},
    "knob": set(KNOBS),
    "result": {o.value for o in Outcome} | set(TICK_RESULTS) | {r.value for r in EvictionResult},
    "reason": set(DEGRADED_REASONS) | set(CEILING_REASONS) | set(GPU_EVICTION_REASONS),
    "direction": set(DIRECTIONS),
    "trigger": set(FAST_TRIGGERS),
    "mode": set(FAST_MODES) | set(EVICTION_MODES),
    "indicator": {i.value for i in Indicator},
    "gpu": set(GPU_INDICES),
    "check": set(MAPPING_CHECKS),
}
INFO = "colocd_agent_info"
INFO_LABELS = {"nodename", "version"}


def _created(name: str, types: dict[str, str]) -> bool:
    """The client library's `<metric>_created` timestamps of counters and histograms."""
    base = name.removesuffix("_created")
    return name.endswith("_created") and types.get(base) in ("counter", "histogram")


def _name_problems(name: str, kind: str) -> list[str]:
    found = []
    if not FAMILY.match(name):
        found.append(f"{name}: not colocd_<subsystem>_<name>")
    words = set(name.split("_"))
    for word in sorted(words & NOT_BASE_UNITS):
        found.append(f"{name}: '{word}' is not a base unit")
    for word, endings in UNIT_FOR.items():
        if word in words and not name.endswith(endings):
            found.append(f"{name}: a {word} metric must end in one of {endings}")
    if kind == "histogram" and not name.endswith(HISTOGRAM_UNITS):
        found.append(f"{name}: a histogram must end in its base unit")
    return found


def _sample_problems(family: str, kind: str, s: Sample) -> list[str]:
    found = []
    if kind == "counter" and not s.name.endswith("_total"):
        found.append(f"{s.name}: a counter's sample must end in _total")
    if kind != "counter" and s.name.endswith("_total"):
        found.append(f"{s.name}: only counters end in _total ({kind})")
    for label, value in s.labels.items():
        if label == "le" and kind == "histogram":
            continue
        if label in INFO_LABELS and family == INFO:
            continue
        allowed = VOCABULARY.get(label)
        if allowed is None:
            found.append(f"{s.name}: label {label}={value!r} is not a bounded label")
        elif value not in allowed:
            found.append(f"{s.name}: label {label}={value!r} is outside its vocabulary")
    return found


def problems(text: str) -> list[str]:
    """Every convention the exposition `text` breaks, one line each (empty: none)."""
    families = list(text_string_to_metric_families(text))
    types = {f.name: f.type for f in families}
    found: list[str] = []
    for f in families:
        if _created(f.name, types):
            continue
        found += _name_problems(f.name, f.type)
        if not f.documentation:
            found.append(f"{f.name}: no help text")
        for s in f.samples:
            found += _sample_problems(f.name, f.type, s)
        if f.name == INFO and (
            len(f.samples) != 1
            or f.samples[0].value != 1
            or set(f.samples[0].labels) != INFO_LABELS
        ):
            found.append(f"{INFO}: one sample, valued 1, labelled {sorted(INFO_LABELS)}")
    return found
