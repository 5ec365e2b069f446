"""The peers' reclaim formulas at their current defaults, as replay policies, plus an oracle.

Each peer reads the same observations as colocd (online, system and batch use; capacity)
and none of them reacts to pressure. Where a peer needs something a trace does not carry
(pod requests, per-pod ages), the assumption is a parameter and is stated here.

koordinator  koordlet's estimator (pkg/koordlet/prediction/peak_predictor.go, config.go):
             decaying histograms of use, trained every minute (TrainingInterval 1 min),
             CPU p95 with a 12 h half-life, memory p98 with a 24 h half-life (VPA-style
             exponential buckets: 0.01 core / 10 MB first bucket, +5 % each); the peak is
             that percentile x 1.10 (SafetyMarginPercent 10); reclaimable =
             min(capacity - peak, request - peak). Pods in their 24 h cold start
             (ColdStartDuration) count at their request: a trace carries no requests, so the
             online tier's request is taken as the whole node (a parameter), and nothing is
             reclaimed in the first 24 h. The node is updated when the value moves by more
             than 10 % or 300 s passed (the slo-controller's defaults).
volcano      Volcano agent, "extend" policy (pkg/agent/oversubscription/policy/extend,
             cmd/agent/app/options): batch = (allocatable - usage) x 60 %
             (OverSubscriptionRatio, default 60), recomputed every 10 s from an
             exponentially weighted history of use in which each newer sample weighs twice
             as much as the one before; published when it moved by more than 10 %
             (overSubscriptionChangeStep 0.1). IncludeSystemUsage is off by default.
crane        Crane's node resource (kept as a reference; no commit since 2024-12):
             ext = allocatable x (1 - reserve) - max(p99 of 24 h sampled every 60 s,
             current), every 10 s, published on a change above 10 %. Crane ships no default
             reserve; 0.10 is ours.
katalyst     Katalyst sysadvisor's "rama" provision policy (pkg/agent/sysadvisor/plugin/
             qosaware/resource/helper/pid.go): the shared pool is sized by a proportional
             controller on the error ln(current) - ln(target) of each indicator, with gains
             scaled by the pool's upper bound (0.05 when above target, 0.009 below), a dead
             band around the target, and the accumulated step clamped to [-2, +10] cores; the
             most conservative indicator (the largest pool) wins. The advisor runs every 5 s.
             Indicator here: the shared pool's cpu_usage_ratio, target 0.8 (the trace has no
             scheduling-wait reading). Reclaimed CPU = capacity - system - pool. Memory uses
             Katalyst's canonical headroom policy (memory/headroompolicy/policy_canonical.go):
             capacity - ReservedForAllocate (default 5Gi) - use x 1.1. What is published
             (qosaware/reporter/manager/resource/generic.go) is never below
             MinReclaimedResourceForReport, default 4 cores and 5Gi (options/dynamic/adminqos/
             reclaimedresource/reclaimedresource.go): "if reclaimed resource is less than
             MinReclaimedResourceForReport, then [it] will be reported as" that. Not modelled:
             the reporter's sliding-window smoothing (its step bounds are per deployment) and
             any CPU reserve inside rama's pool sizing.
oracle       knows the next row of the trace and offers exactly its idle capacity: the most
             any policy can reclaim without a violation (an upper bound, not a peer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from qos.predictor import Window
from qos.replay import Observation, Offer, TraceRow, truths


def _moved(new: float, old: float, ratio: float) -> bool:
    """Worth publishing: the first value, or a change of more than `ratio` of the old one."""
    return (old == 0 and new != 0) or (old != 0 and abs(new - old) / old > ratio)


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


# --- koordinator ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistogramOptions:
    """Exponential buckets: bucket i starts at first x (growth^i - 1) / (growth - 1)."""

    first_bucket: float
    growth: float = 1.05
    max_value: float = 1e12

    @property
    def buckets(self) -> int:
        return 1 + math.ceil(
            math.log(1 + self.max_value * (self.growth - 1) / self.first_bucket)
            / math.log(self.growth)
        )

    def start(self, i: int) -> float:
        return self.first_bucket * (self.growth**i - 1) / (self.growth - 1)

    def find(self, value: float) -> int:
        if value < self.first_bucket:
            return 0
        i = math.floor(
            math.log(1 + value * (self.growth - 1) / self.first_bucket) / math.log(self.growth)
        )
        return min(i, self.buckets - 1)


@dataclass(frozen=True, slots=True)
class DecayingHistogram:
    """Sample weights grow by 2^((t - reference) / half_life), so older samples count less."""

    weights: tuple[float, ...] = ()
    reference: float | None = None
    total: float = 0.0

    def add(
        self, opts: HistogramOptions, half_life: float, t: float, value: float
    ) -> DecayingHistogram:
        weights = list(self.weights) or [0.0] * opts.buckets
        ref = t if self.reference is None else self.reference
        w = 2.0 ** ((t - ref) / half_life)
        i = opts.find(value)
        weights[i] += w
        return DecayingHistogram(tuple(weights), ref, self.total + w)

    def percentile(self, opts: HistogramOptions, q: float) -> float | None:
        """The end of the bucket in which the q-th share of the weight is reached."""
        if self.total <= 0:
            return None
        acc = 0.0
        for i, w in enumerate(self.weights):
            acc += w
            if acc >= q * self.total:
                return opts.start(i + 1)
        return opts.start(len(self.weights))


CPU_BUCKETS = HistogramOptions(first_bucket=10.0, max_value=1_000_000.0)  # millicores
MEMORY_BUCKETS = HistogramOptions(first_bucket=1e7, max_value=1e12)  # bytes


@dataclass(frozen=True, slots=True)
class KoordinatorParams:
    cpu_percentile: float = 0.95
    memory_percentile: float = 0.98
    safety_margin: float = 0.10
    cpu_half_life_seconds: float = 12 * 3600.0
    memory_half_life_seconds: float = 24 * 3600.0
    training_interval_seconds: float = 60.0
    cold_start_seconds: float = 24 * 3600.0
    request_fraction: float = 1.0  # the online tier's request, as a share of the node
    diff_threshold: float = 0.10
    force_update_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class KoordinatorState:
    cpu: DecayingHistogram = field(default_factory=DecayingHistogram)
    memory: DecayingHistogram = field(default_factory=DecayingHistogram)
    started: float | None = None
    trained_at: float | None = None
    published: Offer = field(default_factory=lambda: Offer(0.0, 0.0))
    published_at: float | None = None


class Koordinator:
    name = "koordinator"

    def __init__(self, params: KoordinatorParams | None = None) -> None:
        self.p = params or KoordinatorParams()

    def start(self) -> KoordinatorState:
        return KoordinatorState()

    def _reclaimable(
        self, cap: float, hist: DecayingHistogram, opts: HistogramOptions, q: float
    ) -> float:
        peak = hist.percentile(opts, q)
        if peak is None:
            return 0.0
        peak *= 1.0 + self.p.safety_margin
        return max(0.0, min(cap - peak, cap * self.p.request_fraction - peak))

    def step(self, state: KoordinatorState, obs: Observation) -> tuple[Offer, KoordinatorState]:
        p = self.p
        s = state if state.started is not None else replace(state, started=obs.t)
        if s.trained_at is None or obs.t - s.trained_at >= p.training_interval_seconds:
            cpu = _sum(obs.online_cpu_milli, obs.system_cpu_milli)
            mem = _sum(obs.online_memory_bytes, obs.system_memory_bytes)
            s = replace(
                s,
                cpu=s.cpu
                if cpu is None
                else s.cpu.add(CPU_BUCKETS, p.cpu_half_life_seconds, obs.t, cpu),
                memory=s.memory
                if mem is None
                else s.memory.add(MEMORY_BUCKETS, p.memory_half_life_seconds, obs.t, mem),
                trained_at=obs.t,
            )
            assert s.started is not None
            if obs.t - s.started < p.cold_start_seconds:
                new = Offer(0.0, 0.0)
            else:
                new = Offer(
                    self._reclaimable(obs.cpu_capacity_milli, s.cpu, CPU_BUCKETS, p.cpu_percentile),
                    self._reclaimable(
                        obs.memory_capacity_bytes, s.memory, MEMORY_BUCKETS, p.memory_percentile
                    ),
                )
            old = s.published
            forced = s.published_at is None or obs.t - s.published_at >= p.force_update_seconds
            moved = _moved(new.cpu_milli, old.cpu_milli, p.diff_threshold) or _moved(
                new.memory_bytes, old.memory_bytes, p.diff_threshold
            )
            if forced or moved:
                s = replace(s, published=new, published_at=obs.t)
        return s.published, s


# --- volcano -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolcanoParams:
    ratio: float = 0.60
    interval_seconds: float = 10.0
    newer_weight: float = 2.0  # each newer sample weighs this much more than the one before
    diff_threshold: float = 0.10
    include_system: bool = False


@dataclass(frozen=True, slots=True)
class VolcanoState:
    cpu: float | None = None  # the weighted history of use
    memory: float | None = None
    computed_at: float | None = None
    published: Offer = field(default_factory=lambda: Offer(0.0, 0.0))


class Volcano:
    name = "volcano"

    def __init__(self, params: VolcanoParams | None = None) -> None:
        self.p = params or VolcanoParams()

    def start(self) -> VolcanoState:
        return VolcanoState()

    def _history(self, old: float | None, new: float | None) -> float | None:
        """Weights 1, k, k^2, ... from the oldest sample on: the newest gets (k-1)/k of it."""
        if new is None:
            return old
        if old is None:
            return new
        keep = 1.0 / self.p.newer_weight
        return old * keep + new * (1.0 - keep)

    def step(self, state: VolcanoState, obs: Observation) -> tuple[Offer, VolcanoState]:
        p = self.p
        if state.computed_at is not None and obs.t - state.computed_at < p.interval_seconds:
            return state.published, state
        cpu_use = obs.online_cpu_milli
        mem_use = obs.online_memory_bytes
        if p.include_system:
            cpu_use = _sum(cpu_use, obs.system_cpu_milli)
            mem_use = _sum(mem_use, obs.system_memory_bytes)
        cpu = self._history(state.cpu, cpu_use)
        mem = self._history(state.memory, mem_use)
        new = Offer(
            0.0 if cpu is None else max(0.0, obs.cpu_capacity_milli - cpu) * p.ratio,
            0.0 if mem is None else max(0.0, obs.memory_capacity_bytes - mem) * p.ratio,
        )
        old = state.published
        pub = Offer(
            new.cpu_milli
            if _moved(new.cpu_milli, old.cpu_milli, p.diff_threshold)
            else old.cpu_milli,
            new.memory_bytes
            if _moved(new.memory_bytes, old.memory_bytes, p.diff_threshold)
            else old.memory_bytes,
        )
        return pub, VolcanoState(cpu, mem, obs.t, pub)


# --- crane ---------------------------------------------------------------------------------


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


# --- katalyst ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KatalystParams:
    target_usage_ratio: float = 0.8
    kp_above: float = 0.05  # per unit of log error, x the pool's upper bound in cores
    kp_below: float = 0.009
    dead_band_above: float = 0.05  # no change within target x (1 - below, 1 + above)
    dead_band_below: float = 0.05
    max_step_up_milli: float = 10_000.0
    max_step_down_milli: float = 2_000.0
    advisor_interval_seconds: float = 5.0
    memory_factor: float = 1.1
    memory_reserved_bytes: float = 5 * 1024**3  # ReservedResourceForAllocate
    min_report_cpu_milli: float = 4000.0  # MinReclaimedResourceForReport
    min_report_memory_bytes: float = 5 * 1024**3


@dataclass(frozen=True, slots=True)
class KatalystState:
    pool: float | None = None  # millicores the shared (online) pool may use
    at: float | None = None


class Katalyst:
    name = "katalyst"

    def __init__(self, params: KatalystParams | None = None) -> None:
        self.p = params or KatalystParams()

    def start(self) -> KatalystState:
        return KatalystState()

    def _adjust(self, pool: float, used: float, upper: float) -> float:
        """One rama step: the pool's new size (millicores) from its usage ratio; the gain is
        scaled by the pool's upper bound in cores, as Katalyst does."""
        p = self.p
        current = max(used, 1.0) / max(pool, 1.0)
        target = p.target_usage_ratio
        raw = (current - target) / target
        if -p.dead_band_below <= raw <= p.dead_band_above:
            return pool
        error = math.log(current) - math.log(target)
        kp = (p.kp_above if error >= 0 else p.kp_below) * upper / 1000.0
        step = min(p.max_step_up_milli, max(-p.max_step_down_milli, kp * error * 1000.0))
        return min(upper, max(0.0, pool + step))

    def step(self, state: KatalystState, obs: Observation) -> tuple[Offer, KatalystState]:
        p = self.p
        system = obs.system_cpu_milli or 0.0
        upper = max(0.0, obs.cpu_capacity_milli - system)
        pool = upper if state.pool is None else min(state.pool, upper)
        if obs.online_cpu_milli is not None:
            elapsed = p.advisor_interval_seconds if state.at is None else obs.t - state.at
            for _ in range(max(1, math.floor(elapsed / p.advisor_interval_seconds))):
                pool = self._adjust(pool, obs.online_cpu_milli, upper)
        mem_use = _sum(obs.online_memory_bytes, obs.system_memory_bytes)
        mem = (
            0.0
            if mem_use is None
            else obs.memory_capacity_bytes - p.memory_reserved_bytes - mem_use * p.memory_factor
        )
        # The published floor: never less than the minimum report, whatever is free.
        offer = Offer(
            max(upper - pool, p.min_report_cpu_milli), max(mem, p.min_report_memory_bytes)
        )
        return offer, KatalystState(pool, obs.t)


# --- oracle --------------------------------------------------------------------------------


class Oracle:
    """Offers each row exactly the idle capacity it will have: zero violations, most reclaim."""

    name = "oracle"

    def __init__(self, rows: Sequence[TraceRow]) -> None:
        self.idle = [
            Offer(
                max(0.0, t.cpu_cap - t.system_cpu - t.online_cpu),
                max(0.0, t.mem_cap - t.system_mem - t.online_mem),
            )
            for t in truths(rows)
        ]

    def start(self) -> int:
        return 0

    def step(self, state: int, obs: Observation) -> tuple[Offer, int]:
        nxt = state + 1
        return (self.idle[nxt] if nxt < len(self.idle) else Offer(0.0, 0.0)), nxt


def peers() -> list[Koordinator | Volcano | Crane | Katalyst]:
    """The peers at their defaults, in the order the comparison lists them."""
    return [Koordinator(), Volcano(), Crane(), Katalyst()]
