"""Enforcement without policy: find pods' cgroups, read their usage, apply settings safely.

`detect` finds the hierarchy and kubelet's layout, `layout` knows the names, `knobs` is the
one table of settings, `cgroups` the front over the v1/v2 backends, `readings` what the
readers return. Errors are drawn in `isolation.errors`.
"""

from isolation.cgroups import Cgroups, KnobValue
from isolation.detect import Hierarchy, Mode, detect_hierarchy, detect_layout
from isolation.errors import (
    CgroupGoneError,
    DetectionError,
    IsolationError,
    JournalError,
    KnobError,
    UnsafeNameError,
    UnsupportedKnobError,
    WriteError,
)
from isolation.knobs import KNOBS, CpuMax, IoLimit
from isolation.layout import Driver, KubeletLayout, Runtime
from isolation.readings import CgroupSample, CpuUsage, IoStat, MemoryUsage, Pressure, PsiReading

__all__ = [
    "KNOBS",
    "CgroupGoneError",
    "CgroupSample",
    "Cgroups",
    "CpuMax",
    "CpuUsage",
    "DetectionError",
    "Driver",
    "Hierarchy",
    "IoLimit",
    "IoStat",
    "IsolationError",
    "JournalError",
    "KnobError",
    "KnobValue",
    "KubeletLayout",
    "MemoryUsage",
    "Mode",
    "Pressure",
    "PsiReading",
    "Runtime",
    "UnsafeNameError",
    "UnsupportedKnobError",
    "WriteError",
    "detect_hierarchy",
    "detect_layout",
]
