"""The peers' published reclaim formulas, as replay policies to compare colocd against.

Koordinator, "usage" policy with its defaults, computed centrally every 60 s from usage
averaged over the interval, plus koordlet's BE CPU suppress applied on the node each step:

    batch    = max(0, capacity - capacity x (1 - threshold) - max(system, reserved) - Σ online)
               threshold: cpu 0.60, memory 0.65; published only when it moved by more than
               10 % or 300 s passed; 0 when metrics are older than 15 min
    suppress = capacity x 0.65 - online used - max(system used, reserved)   (cpu, floor 0)

Crane, node resource with reserve plus max(predicted, current), updated every 10 s:

    ext = allocatable - allocatable x reserve - max(predicted, current)
          predicted: p99 of non-batch use sampled every 60 s over 24 h; current: the latest
          reading; skipped when it moved by 10 % or less. Crane ships no default reserve
          (its flag is empty); 0.10 is used here and is a parameter.

Both read the same observations as colocd; neither reacts to pressure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qos.predictor import Window
from qos.replay import Observation, Offer


def _moved(new: float, old: float, ratio: float) -> bool:
    """Worth publishing: the first value, or a change of more than `ratio` of the old one."""
    return (old == 0 and new != 0) or (old != 0 and abs(new - old) / old > ratio)


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


@dataclass(frozen=True, slots=True)
class KoordinatorParams:
    cpu_threshold: float = 0.60
    memory_threshold: float = 0.65
    suppress_threshold: float = 0.65
    interval_seconds: float = 60.0
    diff_threshold: float = 0.10
    force_update_seconds: float = 300.0
    degrade_seconds: float = 900.0
    reserved_cpu_milli: float = 0.0
    reserved_memory_bytes: float = 0.0


@dataclass(frozen=True, slots=True)
class _Mean:
    total: float = 0.0
    count: int = 0

    def add(self, v: float | None) -> _Mean:
        return self if v is None else _Mean(self.total + v, self.count + 1)

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass(frozen=True, slots=True)
class KoordinatorState:
    online_cpu: _Mean = field(default_factory=_Mean)
    system_cpu: _Mean = field(default_factory=_Mean)
    online_mem: _Mean = field(default_factory=_Mean)
    system_mem: _Mean = field(default_factory=_Mean)
    computed_at: float | None = None
    published: Offer = field(default_factory=lambda: Offer(0.0, 0.0))
    published_at: float | None = None
    seen_at: float | None = None
    suppress: float = 0.0


class Koordinator:
    name = "koordinator"

    def __init__(self, params: KoordinatorParams | None = None) -> None:
        self.p = params or KoordinatorParams()

    def start(self) -> KoordinatorState:
        return KoordinatorState()

    def _batch(self, cap: float, threshold: float, system: float, online: float) -> float:
        return max(0.0, cap - cap * (1.0 - threshold) - system - online)

    def step(self, state: KoordinatorState, obs: Observation) -> tuple[Offer, KoordinatorState]:
        p = self.p
        s = replace(
            state,
            online_cpu=state.online_cpu.add(obs.online_cpu_milli),
            system_cpu=state.system_cpu.add(obs.system_cpu_milli),
            online_mem=state.online_mem.add(obs.online_memory_bytes),
            system_mem=state.system_mem.add(obs.system_memory_bytes),
            seen_at=obs.t if obs.online_cpu_milli is not None else state.seen_at,
        )
        if obs.online_cpu_milli is not None:
            system_now = max(obs.system_cpu_milli or 0.0, p.reserved_cpu_milli)
            room = obs.cpu_capacity_milli * p.suppress_threshold - obs.online_cpu_milli
            s = replace(s, suppress=max(0.0, room - system_now))
        if s.computed_at is None or obs.t - s.computed_at >= p.interval_seconds:
            s = self._compute(s, obs)
        offer = Offer(min(s.published.cpu_milli, s.suppress), s.published.memory_bytes)
        return offer, s

    def _compute(self, s: KoordinatorState, obs: Observation) -> KoordinatorState:
        p = self.p
        online_cpu, online_mem = s.online_cpu.value, s.online_mem.value
        if s.seen_at is None or obs.t - s.seen_at > p.degrade_seconds or online_cpu is None:
            new = Offer(0.0, 0.0)
        else:
            sys_cpu = max(s.system_cpu.value or 0.0, p.reserved_cpu_milli)
            sys_mem = max(s.system_mem.value or 0.0, p.reserved_memory_bytes)
            cpu = self._batch(obs.cpu_capacity_milli, p.cpu_threshold, sys_cpu, online_cpu)
            mem = 0.0
            if online_mem is not None:
                cap = obs.memory_capacity_bytes
                mem = self._batch(cap, p.memory_threshold, sys_mem, online_mem)
            new = Offer(cpu, mem)
        forced = s.published_at is None or obs.t - s.published_at >= p.force_update_seconds
        old = s.published
        moved = _moved(new.cpu_milli, old.cpu_milli, p.diff_threshold) or _moved(
            new.memory_bytes, old.memory_bytes, p.diff_threshold
        )
        fresh = KoordinatorState(computed_at=obs.t, seen_at=s.seen_at, suppress=s.suppress)
        if forced or moved:
            return replace(fresh, published=new, published_at=obs.t)
        return replace(fresh, published=old, published_at=s.published_at)


@dataclass(frozen=True, slots=True)
class CraneParams:
    reserve_fraction: float = 0.10
    percentile: float = 0.99
    history_seconds: float = 24 * 3600.0
    sample_interval_seconds: float = 60.0
    update_interval_seconds: float = 10.0
    diff_threshold: float = 0.10


@dataclass(frozen=True, slots=True)
class CraneState:
    cpu_history: Window = field(default_factory=Window)
    mem_history: Window = field(default_factory=Window)
    sampled_at: float | None = None
    updated_at: float | None = None
    published: Offer = field(default_factory=lambda: Offer(0.0, 0.0))


class Crane:
    name = "crane"

    def __init__(self, params: CraneParams | None = None) -> None:
        self.p = params or CraneParams()

    def start(self) -> CraneState:
        return CraneState()

    def _ext(self, cap: float, history: Window, current: float | None) -> float:
        predicted = history.percentile(self.p.percentile)
        used = max(v for v in (predicted, current, 0.0) if v is not None)
        return max(0.0, cap - cap * self.p.reserve_fraction - used)

    def step(self, state: CraneState, obs: Observation) -> tuple[Offer, CraneState]:
        p = self.p
        cpu_now = _sum(obs.online_cpu_milli, obs.system_cpu_milli)
        mem_now = _sum(obs.online_memory_bytes, obs.system_memory_bytes)
        s = state
        if s.sampled_at is None or obs.t - s.sampled_at >= p.sample_interval_seconds:
            n = round(p.history_seconds / p.sample_interval_seconds) + 1
            s = replace(
                s,
                cpu_history=s.cpu_history
                if cpu_now is None
                else s.cpu_history.add(obs.t, cpu_now, p.history_seconds, n),
                mem_history=s.mem_history
                if mem_now is None
                else s.mem_history.add(obs.t, mem_now, p.history_seconds, n),
                sampled_at=obs.t,
            )
        if s.updated_at is None or obs.t - s.updated_at >= p.update_interval_seconds:
            cpu = self._ext(obs.cpu_capacity_milli, s.cpu_history, cpu_now)
            mem = self._ext(obs.memory_capacity_bytes, s.mem_history, mem_now)
            old = s.published
            pub = Offer(
                cpu if _moved(cpu, old.cpu_milli, p.diff_threshold) else old.cpu_milli,
                mem if _moved(mem, old.memory_bytes, p.diff_threshold) else old.memory_bytes,
            )
            s = replace(s, published=pub, updated_at=obs.t)
        return s.published, s
