"""From readings to the budget formula's terms, one resource at a time.

Readings are cleaned first (NaN, inf, negatives become missing; values above capacity are
cut to it), added to the predictor's series, and turned into `Terms`. A missing current
value falls back to the window's peak; a tier never read at all makes the online term
unknown, and then nothing is offered. The system term is the larger of the configured
reservation and system use, less what kubelet already keeps outside capacity for node
daemons (the Node's capacity less its allocatable, or the host's total less kubepods'
limit), so their use is not subtracted twice. Dedicated pods are Guaranteed, so they never
use more than their requests: those requests (their exclusive cores) are counted whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from qos.budget import Terms
from qos.predictor import Prediction, Series, latest, predict
from qos.samples import CpuReading, GpuReading, MemoryReading, clean, reading_time
from qos.settings import PredictorSettings, QosSettings
from qos.state import NodeState
from qos.tiers import Tier
from qos.units import Unit, format_amount, format_fraction


@dataclass(frozen=True, slots=True)
class PredictorState:
    """One series of use per tier and resource."""

    cpu_system: Series = field(default_factory=Series)
    cpu_online: Series = field(default_factory=Series)
    memory_system: Series = field(default_factory=Series)
    memory_online: Series = field(default_factory=Series)
    # The node's last regime change, of online CPU or memory: online's load changed
    # character, so both are held back (vm185's memory leapt with its CPU).
    regime_at: float | None = None
    gpu_online: Series = field(default_factory=Series)
    gpu_memory_online: Series = field(default_factory=Series)


@dataclass(frozen=True, slots=True)
class Demand:
    """The terms for one resource, or why they could not be had (`terms` None)."""

    at: float | None  # when the reading was taken; None when there was no usable reading
    terms: Terms | None
    missing: str = ""


@dataclass(frozen=True, slots=True)
class SetAside:
    """What kubelet keeps outside the capacity the brain plans with (kube-reserved,
    system-reserved, and in a Node's figures its eviction threshold). Node daemons' use up
    to `usable` is already outside capacity, so only their use beyond it competes with pods.
    `kept_free` is kubelet's memory eviction threshold: the node must keep it free, so
    daemons may not use it."""

    amount: float = 0.0
    kept_free: float = 0.0

    @property
    def usable(self) -> float:
        return max(0.0, self.amount - self.kept_free)

    def describe(self, fmt: Callable[[float], str]) -> str:
        text = f"{fmt(self.usable)} kubelet already keeps outside allocatable"
        if self.kept_free > 0:
            free = fmt(self.kept_free)
            text += f" ({fmt(self.amount)} less its {free} eviction threshold, kept free)"
        return text


@dataclass(frozen=True, slots=True)
class _Protected:
    """The system and online terms of one resource, with their reasons."""

    system: float
    system_why: str
    online: float
    online_why: str


def _observe(
    series: Series, at: float, value: float | None, ps: PredictorSettings, capacity: float = 0.0
) -> Series:
    return series if value is None else series.observe(at, value, ps, capacity)


def _protected(
    system: Series,
    online: Series,
    *,
    at: float,
    capacity: float,
    cold_start: float,
    system_now: float | None,
    online_now: float | None,
    reserved: float,
    set_aside: SetAside,
    unit: Unit,
    ps: PredictorSettings,
    regime_at: float | None,
) -> tuple[_Protected | None, Series, Series]:
    """Observe the system and online readings, then predict both with `ps` (online's also
    from the node's last regime change, `regime_at`). The terms are None when online use
    was never read (nothing can be offered then)."""
    system = _observe(system, at, system_now, ps)
    online = _observe(online, at, online_now, ps, capacity)
    p_online = predict(
        online, online_now, at, cold_start, ps, capacity=capacity, regime_at=regime_at
    )
    if p_online.value is None:
        return None, system, online
    p_system = predict(system, system_now, at, 0.0, ps)

    def fmt(v: float) -> str:
        return format_amount(v, unit)

    sys_term, sys_why = _system_term(p_system, reserved, set_aside, fmt, ps)
    found = _Protected(sys_term, sys_why, p_online.value, p_online.describe(ps, fmt))
    return found, system, online


def _system_term(
    p_system: Prediction,
    reserved: float,
    set_aside: SetAside,
    fmt: Callable[[float], str],
    ps: PredictorSettings,
) -> tuple[float, str]:
    """max(reserved, predicted system use), less what kubelet already keeps outside capacity
    for node daemons (never below 0), with every term in the reason."""
    use = p_system.value
    if set_aside.amount <= 0:
        if use is None:
            return reserved, f"use not read; reserved {fmt(reserved)}"
        if reserved >= use:
            return reserved, f"reserved; use {fmt(use)}"
        return use, p_system.describe(ps, fmt)
    if use is None:
        kept, what = reserved, f"use not read; reserved {fmt(reserved)}"
    elif reserved > use:
        kept, what = reserved, f"reserved {fmt(reserved)} (use {fmt(use)})"
    else:
        kept, what = use, f"use {fmt(use)} ({p_system.describe(ps, fmt)})"
    return max(0.0, kept - set_aside.usable), f"{what} less {set_aside.describe(fmt)}"


def _derived_system(r: CpuReading, cap: float) -> float | None:
    """System use as node use minus the pods' tiers, when the direct reading is missing."""
    parts = (r.node_used_milli, r.online_used_milli, r.batch_used_milli)
    node, online, batch = (clean(v, cap) for v in parts)
    if node is None or online is None or batch is None:
        return None
    return max(0.0, node - online - batch)


def cpu_demand(
    reading: CpuReading | None,
    *,
    node: NodeState,
    margin_fraction: float,
    margin_why: str,
    state: PredictorState,
    settings: QosSettings,
) -> tuple[Demand, PredictorState]:
    at = reading_time(reading.at) if reading is not None else None
    if reading is None or at is None:
        return Demand(None, None, "no CPU reading"), state
    cap = float(node.capacity.cpu_milli)
    system = clean(reading.system_used_milli, cap)
    if system is None:
        system = _derived_system(reading, cap)
    online = clean(reading.online_used_milli, cap)
    found, sys_w, online_w = _protected(
        state.cpu_system,
        state.cpu_online,
        at=at,
        capacity=cap,
        cold_start=settings.predictor.cold_start_cpu_fraction * cap,
        system_now=system,
        online_now=online,
        reserved=float(settings.reclaim.reserved_system_cpu_milli),
        set_aside=SetAside(float(node.capacity.cpu_set_aside_milli)),
        unit=Unit.MILLICORES,
        ps=settings.predictor,
        regime_at=state.regime_at,
    )
    state = replace(
        state,
        cpu_system=sys_w,
        cpu_online=online_w,
        regime_at=latest(state.regime_at, online_w.regime_at),
    )
    if found is None:
        return Demand(at, None, "online CPU use never read"), state
    dedicated = node.in_tier(Tier.DEDICATED)
    ded_milli = float(sum(p.requests.cpu_milli or 0 for p in dedicated))
    online_why = found.online_why
    if dedicated:
        online_why += (
            f" + dedicated {format_amount(ded_milli, Unit.MILLICORES)}"
            f" (requests of {len(dedicated)} pods)"
        )
    terms = Terms(
        capacity=cap,
        max_fraction=settings.reclaim.cpu_max_fraction,
        system=found.system,
        online=found.online + ded_milli,
        margin=margin_fraction * cap,
        system_why=found.system_why,
        online_why=online_why,
        margin_why=margin_why,
        capacity_why=node.capacity.cpu_source,
    )
    return Demand(at, terms), state


def memory_demand(
    reading: MemoryReading | None,
    node: NodeState,
    state: PredictorState,
    settings: QosSettings,
) -> tuple[Demand, PredictorState]:
    at = reading_time(reading.at) if reading is not None else None
    if reading is None or at is None:
        return Demand(None, None, "no memory reading"), state
    cap = float(node.capacity.memory_bytes)
    system = clean(reading.system_working_set_bytes, cap)
    online = clean(reading.online_memory_bytes, cap)
    found, sys_w, online_w = _protected(
        state.memory_system,
        state.memory_online,
        at=at,
        capacity=cap,
        cold_start=settings.predictor.cold_start_memory_fraction * cap,
        system_now=system,
        online_now=online,
        reserved=float(settings.reclaim.reserved_system_memory_bytes),
        set_aside=SetAside(
            float(node.capacity.memory_set_aside_bytes),
            float(settings.reclaim.kubelet_eviction_memory_bytes),
        ),
        unit=Unit.BYTES,
        ps=settings.predictor.for_memory(),
        regime_at=state.regime_at,
    )
    state = replace(
        state,
        memory_system=sys_w,
        memory_online=online_w,
        regime_at=latest(state.regime_at, online_w.regime_at),
    )
    if found is None:
        return Demand(at, None, "online memory use never read"), state
    fixed = settings.reclaim.memory_margin_fraction
    terms = Terms(
        capacity=cap,
        max_fraction=settings.reclaim.memory_max_fraction,
        system=found.system,
        online=found.online,
        margin=fixed * cap,
        system_why=found.system_why,
        online_why="with its page cache, " + found.online_why,
        margin_why=f"fixed {format_fraction(fixed)}",
        capacity_why=node.capacity.memory_source,
    )
    return Demand(at, terms), state


def gpu_capacity(reading: GpuReading | None, node: NodeState) -> int:
    """Hundredths of one GPU the node has: the reading's device count, else the node's."""
    devices = clean(reading.devices) if reading is not None else None
    count = int(devices) if devices is not None else node.capacity.gpus
    return max(0, count) * 100


def gpu_demand(
    reading: GpuReading | None,
    node: NodeState,
    state: PredictorState,
    settings: QosSettings,
) -> tuple[Demand, PredictorState]:
    at = reading_time(reading.at) if reading is not None else None
    if reading is None or at is None:
        return Demand(None, None, "no GPU reading"), state
    cap = float(gpu_capacity(reading, node))
    ps = settings.predictor
    total = clean(reading.memory_total_bytes)
    online = clean(reading.online_used_hundredths, cap)
    online_mem = clean(reading.online_memory_bytes, total)
    state = replace(
        state,
        gpu_online=_observe(state.gpu_online, at, online, ps),
        gpu_memory_online=_observe(state.gpu_memory_online, at, online_mem, ps),
    )
    p_online = predict(state.gpu_online, online, at, 0.0, ps)
    if p_online.value is None:
        return Demand(at, None, "online GPU use never read"), state
    reserve = settings.gpu.reserve_fraction
    max_fraction = settings.reclaim.gpu_max_fraction
    bound, bound_why = None, ""
    p_mem = predict(state.gpu_memory_online, online_mem, at, 0.0, ps)
    if total and p_mem.value is not None:
        free = total * max_fraction - p_mem.value - reserve * total
        bound = cap * free / total
        bound_why = (
            f"GPU memory: online {format_amount(p_mem.value, Unit.BYTES)} "
            f"({p_mem.describe(ps, lambda v: format_amount(v, Unit.BYTES))}) "
            f"of {format_amount(total, Unit.BYTES)}"
        )
    terms = Terms(
        capacity=cap,
        max_fraction=max_fraction,
        system=0.0,
        online=p_online.value,
        margin=reserve * cap,
        system_why="no system GPU use",
        online_why=p_online.describe(ps, lambda v: format_amount(v, Unit.HUNDREDTHS)),
        margin_why=f"reserve {format_fraction(reserve)}",
        bound=bound,
        bound_why=bound_why,
    )
    return Demand(at, terms), state
