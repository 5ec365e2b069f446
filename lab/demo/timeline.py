"""What the demo measures: one `Second` per line of the live view, one `PhaseResult` per phase.

A `Second` is read from what the workloads report (the probe's interval p99, the hogs'
units of work, the memory hog's size), from the agent's status file (its budgets) and from
cpuacct (CPU used in the tree and on the whole machine). A `PhaseResult` covers one kind of
phase, pooling the measured windows of its turns: online latency percentiles from every
request the probe served in them, batch throughput from the hogs' reports bracketing each
(weighted by its length), and the budgets colocd published.

Batch is shown as the CPU its hogs got (cores), and its throughput as units of work done
per second, compared between phases (this machine's CPU speed varies too much over a
minute for a unit to stand for a fixed amount of CPU).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

from agent.report.status import Status
from lab.demo.agent_child import AgentProcess
from lab.demo.scenario import DemoNode
from lab.workloads import LatencySummary, MemoryGrowth, ProbeInterval, units_per_second
from lab.workloads.protocol import iter_kind

__all__ = ["Follower", "PhaseResult", "Second", "phase_result"]

BATCH_CPU = "colocd.io/batch-cpu"
BATCH_MEMORY = "colocd.io/batch-memory"


class Second(NamedTuple):
    """One line of the live view, one point of the plot."""

    t: float  # seconds since the first phase began
    at: float  # monotonic clock
    phase: str
    online_p99_ms: float | None  # worst interval p99 reported since the previous line
    batch_cores: float | None  # the CPU the hogs got since the previous line
    batch_memory_bytes: int | None  # what the memory hog holds
    batch_cpu_milli: int | None  # colocd's budgets; None while it does not run
    batch_memory_budget_bytes: int | None
    why: str  # colocd's reason, short; or what runs instead
    machine_cpu_s: float | None  # cumulative CPU time, the whole machine and the tree
    tree_cpu_s: float | None


class PhaseResult(NamedTuple):
    name: str
    windows: tuple[tuple[float, float], ...]  # measured (monotonic), each after it settled
    latency_us: LatencySummary
    batch_cores: float | None  # the CPU the hogs got
    batch_units_per_s: float | None  # the work they did
    batch_cpu_milli: int | None  # median over the windows; None: colocd did not run
    batch_memory_budget_bytes: int | None
    other_cores: float | None  # CPU used outside the demo's tree (other work on the machine)
    idle_cores: float | None  # CPU nothing used (the machine's CPUs less all it used)
    latency_by_second_us: tuple[tuple[float, ...], ...] = ()  # the windows', second by second


def budget(status: Status | None, name: str) -> int | None:
    if status is None:
        return None
    return next((b.amount for b in status.budgets if b.name == name), None)


def short_reason(status: Status) -> str:
    """Why batch-cpu is what it is, in a few words: what is kept for online, and the cap."""
    cpu = next((b for b in status.budgets if b.name == BATCH_CPU), None)
    parts = []
    if cpu is not None and cpu.predicted_online is not None:
        parts.append(f"online needs ~{cpu.predicted_online:.0f}m")
    parts.append(f"margin {status.margin.millicores}m")
    if cpu is not None and cpu.degraded:
        parts.append("degraded")
    caps = [r.split(":")[0] for r in status.batch_tier if r.startswith(("batch on", "batch quota"))]
    if caps:
        parts.append(caps[0])
    elif any("no CPU cap" in r for r in status.batch_tier):
        parts.append("batch cpu.idle, no cap")
    return ", ".join(parts)


class Follower:
    """Turns the workloads' reports and the agent's status into one `Second` per call."""

    def __init__(self, node: DemoNode, t0: float) -> None:
        self.node = node
        self.t0 = t0
        self.agent: AgentProcess | None = None
        self._last = t0

    def second(self, phase: str, now: float, idle_why: str) -> Second:
        node = self.node
        node.poll()
        since, self._last = self._last, now
        p99 = [
            r.latency_p99_us
            for r in iter_kind(node.probe.reports if node.probe else [], ProbeInterval)
            if since < r.t <= now and r.latency_p99_us is not None
        ]
        rates = [units_per_second(h.reports, since, now, cpu=True) for h in node.hogs]
        present = [r for r in rates if r is not None]
        grown = list(iter_kind(node.filler.reports if node.filler else [], MemoryGrowth))
        status = self.agent.status() if self.agent is not None else None
        return Second(
            t=now - self.t0,
            at=now,
            phase=phase,
            online_p99_ms=max(p99) / 1000 if p99 else None,
            batch_cores=sum(present) if present else None,
            batch_memory_bytes=grown[-1].anon_bytes if grown else None,
            batch_cpu_milli=budget(status, BATCH_CPU),
            batch_memory_budget_bytes=budget(status, BATCH_MEMORY),
            why=short_reason(status) if status is not None else idle_why,
            machine_cpu_s=node.cpu_seconds(""),
            tree_cpu_s=node.cpu_seconds(node.tree.root) if node.tree else None,
        )


def _median_int(values: Sequence[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present)) if present else None


def _cores(seconds: Sequence[Second], counter: Callable[[Second], float | None]) -> float | None:
    """The CPU a cumulative counter of `Second` grew by between the first and last of
    `seconds`, in cores (None: fewer than two seconds, or not read)."""
    if len(seconds) < 2:
        return None
    a, b = counter(seconds[0]), counter(seconds[-1])
    if a is None or b is None:
        return None
    return max(0.0, b - a) / (seconds[-1].at - seconds[0].at)


def _hogs(node: DemoNode, start: float, end: float, *, cpu: bool) -> float | None:
    """What the CPU hogs got together in [start, end]: cores (`cpu`) or units of work a
    second; None unless every hog reported over it."""
    rates = [units_per_second(h.reports, start, end, cpu=cpu) for h in node.hogs]
    present = [r for r in rates if r is not None]
    return sum(present) if present and len(present) == len(rates) else None


def _machine(s: Second) -> float | None:
    return s.machine_cpu_s


def _idle(cpus: int, used: float | None) -> float | None:
    return None if used is None else max(0.0, cpus - used)


def _outside(s: Second) -> float | None:
    """CPU seconds used outside the tree, so far."""
    if s.machine_cpu_s is None or s.tree_cpu_s is None:
        return None
    return s.machine_cpu_s - s.tree_cpu_s


def phase_result(
    name: str,
    windows: Sequence[tuple[float, float]],
    node: DemoNode,
    requests: Sequence[tuple[float, float]],
    seconds: Sequence[Second],
) -> PhaseResult:
    """The figures of one kind of phase over its measured windows [start, end] (monotonic);
    `requests` are (arrival time, latency in us) of those the probe served in them."""
    by_second: dict[tuple[int, int], list[float]] = {}
    for at, latency in requests:
        w = next(i for i, (a, b) in enumerate(windows) if a <= at <= b)
        by_second.setdefault((w, int(at - windows[w][0])), []).append(latency)

    def inside(start: float, end: float) -> list[Second]:
        return [s for s in seconds if start <= s.at <= end]

    def per_window(rate: Callable[[float, float], float | None]) -> float | None:
        """The rate over all the windows, each weighted by its length."""
        rates = [r for a, b in windows if (r := rate(a, b)) is not None]
        if not windows or len(rates) < len(windows):
            return None
        spans = [b - a for a, b in windows]
        return sum(r * t for r, t in zip(rates, spans, strict=True)) / sum(spans)

    every = [s for a, b in windows for s in inside(a, b)]
    return PhaseResult(
        name=name,
        windows=tuple(windows),
        latency_us=LatencySummary.of([latency for _, latency in requests]),
        batch_cores=per_window(lambda a, b: _hogs(node, a, b, cpu=True)),
        batch_units_per_s=per_window(lambda a, b: _hogs(node, a, b, cpu=False)),
        batch_cpu_milli=_median_int([s.batch_cpu_milli for s in every]),
        batch_memory_budget_bytes=_median_int([s.batch_memory_budget_bytes for s in every]),
        other_cores=per_window(lambda a, b: _cores(inside(a, b), _outside)),
        idle_cores=per_window(lambda a, b: _idle(node.cpus, _cores(inside(a, b), _machine))),
        latency_by_second_us=tuple(tuple(v) for _, v in sorted(by_second.items())),
    )
