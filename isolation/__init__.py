"""Enforcement without policy: find pods' cgroups, read their usage, apply settings safely.

`detect` finds the hierarchy and kubelet's layout, `layout` knows the names, `discovery`
maps pods to cgroups, `knobs` is the one table of settings, `cgroups` the front over the
v1/v2 backends, `readings` what the readers return, `executor` the only writer (with its
`journal`), `settings` the configuration section. Errors are drawn in `isolation.errors`.
"""

from isolation._gpu_errors import GpuError, GpuLostError, NvmlCallError
from isolation._net_errors import (
    ForeignStateError,
    LinkNotFoundError,
    NetlinkOperationError,
    NetworkError,
    NftablesError,
    ShapingSpecError,
)
from isolation.cgroups import Cgroups, KnobValue
from isolation.detect import Hierarchy, Mode, detect_hierarchy, detect_layout
from isolation.discovery import PodCgroups, discover_pod
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
from isolation.executor import ApplyReport, Executor, Level, Outcome, Result, Write
from isolation.journal import Journal
from isolation.knobs import KNOBS, CpuMax, IoLimit
from isolation.layout import Driver, KubeletLayout, Runtime
from isolation.readings import (
    CONTAINER_TICK,
    EVERYTHING,
    POD_TICK,
    CgroupSample,
    CpuUsage,
    IoStat,
    MemoryUsage,
    Pressure,
    PsiReading,
    ReadSet,
)
from isolation.settings import IsolationSettings

__all__ = [
    "CONTAINER_TICK",
    "EVERYTHING",
    "KNOBS",
    "POD_TICK",
    "ApplyReport",
    "CgroupGoneError",
    "CgroupSample",
    "Cgroups",
    "CpuMax",
    "CpuUsage",
    "DetectionError",
    "Driver",
    "Executor",
    "ForeignStateError",
    "GpuError",
    "GpuLostError",
    "Hierarchy",
    "IoLimit",
    "IoStat",
    "IsolationError",
    "IsolationSettings",
    "Journal",
    "JournalError",
    "KnobError",
    "KnobValue",
    "KubeletLayout",
    "Level",
    "LinkNotFoundError",
    "MemoryUsage",
    "Mode",
    "NetlinkOperationError",
    "NetworkError",
    "NftablesError",
    "NvmlCallError",
    "Outcome",
    "PodCgroups",
    "Pressure",
    "PsiReading",
    "ReadSet",
    "Result",
    "Runtime",
    "ShapingSpecError",
    "UnsafeNameError",
    "UnsupportedKnobError",
    "Write",
    "WriteError",
    "detect_hierarchy",
    "detect_layout",
    "discover_pod",
]
