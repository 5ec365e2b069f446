"""colocd's brain: pure decisions, no I/O (no clocks, files, sockets or globals).

Given the node's pods (`NodeState`), typed readings (`Snapshot`), the previous
`BrainState` and `QosSettings`, `decide()` returns a `Plan` (the desired state, `None`
meaning "leave alone", every value with a one-line reason) and the next `BrainState`.
`replay()` runs the same code over a trace for `colocd simulate`.

Errors (qos.errors):

    QosError
     └── TierAnnotationError   a pod's colocd.io/tier annotation names no tier

`decide()` raises none: bad readings count as missing and fail towards online.
"""

from qos.decide import BrainState, decide
from qos.errors import QosError, TierAnnotationError
from qos.plan import Plan
from qos.replay import ReplayResult, TraceRow, replay
from qos.samples import (
    BatchDemand,
    CpuReading,
    GpuReading,
    LatencyReading,
    MemoryReading,
    PressureReading,
    Snapshot,
    ThrottleReading,
)
from qos.settings import QosSettings
from qos.state import NodeCapacity, NodeState
from qos.tiers import Tier, classify

__all__ = [
    "BatchDemand",
    "BrainState",
    "CpuReading",
    "GpuReading",
    "LatencyReading",
    "MemoryReading",
    "NodeCapacity",
    "NodeState",
    "Plan",
    "PressureReading",
    "QosError",
    "QosSettings",
    "ReplayResult",
    "Snapshot",
    "ThrottleReading",
    "Tier",
    "TierAnnotationError",
    "TraceRow",
    "classify",
    "decide",
    "replay",
]
