"""What one tick, and the fast path between ticks, produced: the records the loop reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from agent.observe.gpus import GpuObservation
from agent.observe.sampler import Readings
from agent.observe.topology import Topology
from isolation.executor import ApplyReport, Write
from qos.plan import Plan

__all__ = ["Clamp", "Degraded", "TickResult"]


class Degraded(NamedTuple):
    """Why the loop runs degraded: a class for the metric label, and the line for humans."""

    kind: str  # one of agent.report.metrics.DEGRADED_REASONS
    text: str


@dataclass(frozen=True, slots=True)
class Clamp:
    at: float  # the loop's clock
    wall: float
    trigger: str
    reaction_s: float
    cap: str


@dataclass(slots=True)
class TickResult:
    at: float
    plan: Plan
    topology: Topology
    readings: Readings | None  # None: withheld from the brain (pod source lost)
    writes: list[Write]
    report: ApplyReport | None  # None in dry-run
    degraded: list[Degraded] = field(default_factory=list)
    # What the plan wanted and could not do, pods not found or refused: one line each.
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gpu: GpuObservation | None = None  # None: no GPU read on this node
