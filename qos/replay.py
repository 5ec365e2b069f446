"""Replaying a usage trace through a reclaim policy, with no I/O (`colocd simulate`).

A trace is a time series of rows; row i covers [t_i, t_{i+1}) (the last row lasts as long
as the one before it). At the end of each row the policy observes what it could have
measured and sets the offer to batch for the next row; before the first decision batch is
offered nothing. During a row:

- batch uses min(batch demand, offer, capacity - system): what it was offered it takes;
- what is left to online is capacity - system - batch; a row in which online's demand
  exceeds that while batch holds anything counts as SLO-violation time (CPU or memory);
- online is served min(demand, left), and that is what the policy observes (unmet demand
  cannot be measured); the true idle capacity is capacity - system - online demand;
- online CPU pressure is modelled when the trace has no `online_cpu_psi`: the
  instantaneous stall share is Erlang C, the probability that work waits with online's
  demand (in cores) offered to the cores left to it, smoothed like the kernel's avg10
  (exponential, 10 s). It is a model, stated as such, and the same for every policy.

A cell left empty in the trace is a missing reading: the policy sees None, and the truth
carries the last known value forward.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol, TypeVar

from qos.decide import BrainState, decide
from qos.samples import CpuReading, MemoryReading, PressureReading, Snapshot
from qos.settings import QosSettings
from qos.state import NodeCapacity, NodeState

PSI_WINDOW_SECONDS = 10.0
S = TypeVar("S")
GIB = 1024**3


class TraceRow(NamedTuple):
    """One row of a trace; CPU in millicores, memory in bytes, PSI in percent."""

    t: float
    cpu_capacity_milli: float | None
    online_cpu_milli: float | None
    batch_cpu_demand_milli: float | None
    system_cpu_milli: float | None = None
    memory_capacity_bytes: float | None = None
    online_memory_bytes: float | None = None
    batch_memory_demand_bytes: float | None = None
    system_memory_bytes: float | None = None
    online_cpu_psi: float | None = None


class Observation(NamedTuple):
    """What a policy sees at time `t` (the end of a row): readings, None where missing."""

    t: float
    cpu_capacity_milli: float
    memory_capacity_bytes: float
    online_cpu_milli: float | None
    system_cpu_milli: float | None
    batch_cpu_milli: float | None
    online_memory_bytes: float | None
    system_memory_bytes: float | None
    batch_memory_bytes: float | None
    online_cpu_psi: float | None


class Offer(NamedTuple):
    """What batch may use from now on."""

    cpu_milli: float
    memory_bytes: float


class Policy(Protocol[S]):
    name: str

    def start(self) -> S: ...

    def step(self, state: S, obs: Observation) -> tuple[Offer, S]: ...


@dataclass(frozen=True, slots=True)
class Violations:
    """SLO-violation time of one resource: episodes (runs of consecutive violating rows),
    their total seconds, and the worst shortfall (online demand minus what was left to it,
    millicores or bytes)."""

    count: int = 0
    seconds: float = 0.0
    worst_shortfall: float = 0.0
    ongoing: bool = False

    def add(self, shortfall: float, dt: float) -> Violations:
        """One row: `shortfall` > 0 while batch holds some is a violation of `dt` seconds."""
        if shortfall <= 0:
            return self if not self.ongoing else replace(self, ongoing=False)
        return Violations(
            self.count + (0 if self.ongoing else 1),
            self.seconds + dt,
            max(self.worst_shortfall, shortfall),
            True,
        )


class OfferPoint(NamedTuple):
    """One row of the offer series (for plots): what batch was offered and what was idle."""

    t: float
    cpu_offer_milli: float
    cpu_idle_milli: float
    memory_offer_bytes: float
    memory_idle_bytes: float


@dataclass(frozen=True, slots=True)
class ReplayResult:
    name: str
    duration_seconds: float
    reclaimed_core_hours: float
    reclaimed_gib_hours: float
    offered_idle_fraction: float
    offered_idle_fraction_memory: float
    violation_seconds: float
    cpu: Violations
    memory: Violations
    mean_online_cpu_psi: float
    series: tuple[OfferPoint, ...] = ()

    @property
    def cpu_violation_seconds(self) -> float:
        return self.cpu.seconds

    @property
    def memory_violation_seconds(self) -> float:
        return self.memory.seconds

    def as_row(self) -> dict[str, object]:
        return {
            "name": self.name,
            "reclaimed_core_hours": round(self.reclaimed_core_hours, 3),
            "reclaimed_gib_hours": round(self.reclaimed_gib_hours, 3),
            "offered_idle_fraction": round(self.offered_idle_fraction, 4),
            "offered_idle_fraction_memory": round(self.offered_idle_fraction_memory, 4),
            "violation_seconds": round(self.violation_seconds, 3),
            "cpu_violations": self.cpu.count,
            "cpu_violation_seconds": round(self.cpu.seconds, 3),
            "cpu_worst_shortfall_cores": round(self.cpu.worst_shortfall / 1000.0, 3),
            "memory_violations": self.memory.count,
            "memory_violation_seconds": round(self.memory.seconds, 3),
            "memory_worst_shortfall_gib": round(self.memory.worst_shortfall / GIB, 3),
            "mean_online_cpu_psi": round(self.mean_online_cpu_psi, 3),
            "duration_seconds": round(self.duration_seconds, 3),
        }


def erlang_c(servers: float, load: float) -> float:
    """Probability that work must wait: `load` (Erlangs) offered to `servers` servers.
    Non-integer server counts interpolate between the neighbouring integers."""
    if load <= 0:
        return 0.0
    if servers <= load:
        return 1.0
    lo = math.floor(servers)
    if lo < 1:
        return 1.0
    frac = servers - lo

    def whole(c: int) -> float:
        if c <= load:
            return 1.0
        b = 1.0
        for k in range(1, c + 1):
            b = load * b / (k + load * b)
        return c * b / (c - load * (1.0 - b))

    return whole(lo) if frac == 0 else (1 - frac) * whole(lo) + frac * whole(lo + 1)


class Truth(NamedTuple):
    """What really happened in one row (missing cells carried forward)."""

    cpu_cap: float
    online_cpu: float
    batch_cpu_demand: float
    system_cpu: float
    mem_cap: float
    online_mem: float
    batch_mem_demand: float
    system_mem: float


def truths(rows: Sequence[TraceRow]) -> list[Truth]:
    """Carry each column's last known value forward over missing cells (0 before any)."""
    last = [0.0] * 8
    out = []
    for r in rows:
        cells = (
            r.cpu_capacity_milli,
            r.online_cpu_milli,
            r.batch_cpu_demand_milli,
            r.system_cpu_milli,
            r.memory_capacity_bytes,
            r.online_memory_bytes,
            r.batch_memory_demand_bytes,
            r.system_memory_bytes,
        )
        last = [last[i] if v is None else max(0.0, v) for i, v in enumerate(cells)]
        out.append(Truth(*last))
    return out


def _seen(cell: float | None, value: float) -> float | None:
    """The observed value, or None where the trace left the reading out."""
    return None if cell is None else value


def _durations(rows: Sequence[TraceRow]) -> list[float]:
    dts = [max(0.0, b.t - a.t) for a, b in itertools.pairwise(rows)]
    dts.append(dts[-1] if dts else 1.0)
    return dts


def at_tick(rows: Sequence[TraceRow], seconds: float) -> list[TraceRow]:
    """The trace with a decision at least every `seconds`, as the agent ticks: each row split
    into pieces `seconds` long (its last piece shorter), each holding the row's readings.
    No row is lost; a row no longer than `seconds` stays as it is. (The trace's last piece
    lasts as long as the one before it, so the whole may grow by less than a tick.)"""
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"tick {seconds!r}: must be a positive number of seconds")
    out: list[TraceRow] = []
    for row, dt in zip(rows, _durations(rows), strict=True):
        pieces = max(1, math.ceil(dt / seconds))
        out += [row._replace(t=row.t + i * seconds) for i in range(pieces)]
    return out


def replay(rows: Sequence[TraceRow], policy: Policy[S], *, series: bool = False) -> ReplayResult:
    """Replay `rows` through `policy`; with `series`, keep the offer of every row too."""
    real = truths(rows)
    state = policy.start()
    offer = Offer(0.0, 0.0)
    psi = 0.0
    reclaimed_cpu = reclaimed_mem = 0.0
    offered_cpu = offered_mem = idle_cpu_total = idle_mem_total = 0.0
    viol = 0.0
    v_cpu = v_mem = Violations()
    psi_time = 0.0
    duration = 0.0
    points: list[OfferPoint] = []
    for row, truth, dt in zip(rows, real, _durations(rows), strict=True):
        room_cpu = max(0.0, truth.cpu_cap - truth.system_cpu)
        room_mem = max(0.0, truth.mem_cap - truth.system_mem)
        batch_cpu = min(truth.batch_cpu_demand, offer.cpu_milli, room_cpu)
        batch_mem = min(truth.batch_mem_demand, offer.memory_bytes, room_mem)
        left_cpu = room_cpu - batch_cpu
        left_mem = room_mem - batch_mem
        short_cpu = truth.online_cpu - left_cpu if batch_cpu > 0 else 0.0
        short_mem = truth.online_mem - left_mem if batch_mem > 0 else 0.0
        v_cpu = v_cpu.add(short_cpu, dt)
        v_mem = v_mem.add(short_mem, dt)
        viol += dt if short_cpu > 0 or short_mem > 0 else 0.0
        idle_cpu = max(0.0, room_cpu - truth.online_cpu)
        idle_mem = max(0.0, room_mem - truth.online_mem)
        offered_cpu += min(offer.cpu_milli, idle_cpu) * dt
        offered_mem += min(offer.memory_bytes, idle_mem) * dt
        idle_cpu_total += idle_cpu * dt
        idle_mem_total += idle_mem * dt
        reclaimed_cpu += batch_cpu * dt
        reclaimed_mem += batch_mem * dt
        if series:
            points.append(OfferPoint(row.t, batch_cpu, idle_cpu, batch_mem, idle_mem))
        stall = 100.0 * erlang_c(left_cpu / 1000.0, truth.online_cpu / 1000.0)
        decay = math.exp(-dt / PSI_WINDOW_SECONDS)
        psi = psi * decay + stall * (1.0 - decay)
        psi_time += psi * dt
        duration += dt

        obs = Observation(
            t=row.t + dt,
            cpu_capacity_milli=truth.cpu_cap,
            memory_capacity_bytes=truth.mem_cap,
            online_cpu_milli=_seen(row.online_cpu_milli, min(truth.online_cpu, left_cpu)),
            system_cpu_milli=_seen(row.system_cpu_milli, truth.system_cpu),
            batch_cpu_milli=batch_cpu,
            online_memory_bytes=_seen(row.online_memory_bytes, truth.online_mem),
            system_memory_bytes=_seen(row.system_memory_bytes, truth.system_mem),
            batch_memory_bytes=batch_mem,
            online_cpu_psi=psi if row.online_cpu_psi is None else row.online_cpu_psi,
        )
        offer, state = policy.step(state, obs)
    return ReplayResult(
        name=policy.name,
        duration_seconds=duration,
        reclaimed_core_hours=reclaimed_cpu / 1000.0 / 3600.0,
        reclaimed_gib_hours=reclaimed_mem / GIB / 3600.0,
        offered_idle_fraction=offered_cpu / idle_cpu_total if idle_cpu_total else 0.0,
        offered_idle_fraction_memory=offered_mem / idle_mem_total if idle_mem_total else 0.0,
        violation_seconds=viol,
        cpu=v_cpu,
        memory=v_mem,
        mean_online_cpu_psi=psi_time / duration if duration else 0.0,
        series=tuple(points),
    )


class ColocdPolicy:
    """colocd's own `decide()`, fed the observations as readings."""

    name = "colocd"

    def __init__(self, settings: QosSettings) -> None:
        self.settings = settings

    def start(self) -> BrainState:
        return BrainState()

    def step(self, state: BrainState, obs: Observation) -> tuple[Offer, BrainState]:
        node = NodeState(
            "simulated",
            NodeCapacity(int(obs.cpu_capacity_milli), int(obs.memory_capacity_bytes)),
        )
        snapshot = Snapshot(
            node=node,
            cpu=CpuReading(
                obs.t,
                system_used_milli=obs.system_cpu_milli,
                online_used_milli=obs.online_cpu_milli,
                batch_used_milli=obs.batch_cpu_milli,
            ),
            memory=MemoryReading(
                obs.t,
                system_working_set_bytes=obs.system_memory_bytes,
                online_memory_bytes=obs.online_memory_bytes,
                batch_working_set_bytes=obs.batch_memory_bytes,
            ),
            cpu_pressure=PressureReading(obs.t, some_avg10=obs.online_cpu_psi),
        )
        plan, state = decide(snapshot, state, self.settings, obs.t)
        return Offer(plan.budgets.cpu.amount, plan.budgets.memory.amount), state
