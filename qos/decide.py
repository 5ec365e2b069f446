"""`decide(snapshot, state, settings, now) -> (Plan, BrainState)`: the whole brain, pure.

One call per tick. `state` is what the previous call returned (`BrainState()` at start):
the predictor's windows, the margin controller, the last fresh budgets, the eviction
bookkeeping and the dedicated pods' cores. No clocks: `now` is the loop's monotonic time
in seconds, on the same clock as the readings' `at`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qos.budget import (
    Budget,
    LastGood,
    Resource,
    from_terms,
    is_stale,
    unknown,
    without_fresh_readings,
)
from qos.cpus import (
    CpuLayout,
    CpuTopology,
    assign_dedicated,
    batch_cpuset,
    format_cpus,
    kubelet_layout,
    node_cpus,
)
from qos.demand import Demand, PredictorState, cpu_demand, gpu_capacity, gpu_demand, memory_demand
from qos.eviction import EvictionState, MemoryPressure, plan_evictions
from qos.gpu import GpuBrain, decide_gpus
from qos.io import plan_io
from qos.limits import batch_pods, batch_tier, online_pods
from qos.margin import MarginState, initial_margin, update_margin
from qos.plan import (
    BatchTierPlan,
    Budgets,
    CpuIdle,
    CpusetCap,
    ExtendedResource,
    MarginReport,
    Plan,
    QuotaCap,
)
from qos.samples import Snapshot, clean, reading_time
from qos.settings import CpuMechanism, Indicator, QosSettings
from qos.units import format_fraction


@dataclass(frozen=True, slots=True)
class BrainState:
    predictor: PredictorState = field(default_factory=PredictorState)
    margin: MarginState | None = None  # None: start from settings.margin.initial_fraction
    cpu: LastGood | None = None
    memory: LastGood | None = None
    gpu: LastGood | None = None
    eviction: EvictionState = field(default_factory=EvictionState)
    dedicated: tuple[tuple[str, tuple[int, ...]], ...] = ()
    gpus: GpuBrain = field(default_factory=GpuBrain)


def _indicator(snapshot: Snapshot, settings: QosSettings) -> tuple[float | None, float | None]:
    """(value, reading time) of the configured interference indicator, cleaned."""
    match settings.margin.indicator:
        case Indicator.CPU_PSI:
            r = snapshot.cpu_pressure
            return (None, None) if r is None else (clean(r.some_avg10, 100.0), reading_time(r.at))
        case Indicator.THROTTLING:
            t = snapshot.throttling
            return (
                (None, None) if t is None else (clean(t.throttled_ratio, 1.0), reading_time(t.at))
            )
        case Indicator.LATENCY:
            lat = snapshot.latency
            return (None, None) if lat is None else (clean(lat.value), reading_time(lat.at))


def _budget(  # noqa: PLR0917 (one call per resource, same argument order)
    resource: Resource,
    capacity: int,
    demand: Demand,
    last: LastGood | None,
    now: float,
    settings: QosSettings,
) -> tuple[Budget, LastGood | None]:
    if is_stale(demand.at, now, settings.reclaim):
        return without_fresh_readings(resource, capacity, last, now, settings.reclaim), last
    assert demand.at is not None
    if demand.terms is None:
        return unknown(resource, capacity, demand.missing), last
    budget = from_terms(resource, capacity, demand.terms)
    return budget, LastGood(budget.amount, demand.at)


def _memory_pressure(snapshot: Snapshot, now: float, settings: QosSettings) -> MemoryPressure:
    """Fresh memory-pressure evidence only; stale or missing readings are no evidence."""
    psi = usage = None
    times: list[float] = []
    r = snapshot.memory_pressure
    at = None if r is None else reading_time(r.at)
    if r is not None and at is not None and not is_stale(at, now, settings.reclaim):
        psi = clean(r.some_avg10, 100.0)
        times += [at] if psi is not None else []
    m = snapshot.memory
    cap = snapshot.node.capacity.memory_bytes
    at = None if m is None else reading_time(m.at)
    if m is not None and at is not None and cap > 0 and not is_stale(at, now, settings.reclaim):
        ws = clean(m.node_working_set_bytes, float(cap))
        usage = None if ws is None else ws / cap
        times += [at] if usage is not None else []
    return MemoryPressure(psi, usage, max(times) if times else None)


def _batch_demand(snapshot: Snapshot, now: float, settings: QosSettings) -> float | None:
    """What batch wants of the CPU, from a fresh reading only."""
    d = snapshot.batch_demand
    if d is None or is_stale(reading_time(d.at), now, settings.reclaim):
        return None
    return clean(d.cpu_milli)


def cpu_mechanism(settings: QosSettings) -> CpuMechanism:
    """The mechanism in force: `auto` is cpuset, on kernels with cpu.idle and without, the
    least harmful to online's wake-ups of the three in benchmarks/bench_reaction.py (see
    CpuSuppressSettings)."""
    mechanism = settings.cpu.mechanism
    return CpuMechanism.CPUSET if mechanism is CpuMechanism.AUTO else mechanism


def _cpu_cap(
    budget: Budget,
    layout: CpuLayout,
    settings: QosSettings,
    mechanism: CpuMechanism,
    topology: CpuTopology,
) -> CpusetCap | QuotaCap | None:
    match mechanism:
        case CpuMechanism.CPUSET:
            cap = batch_cpuset(layout.shared, budget.amount, settings.cpu.cpuset_min_cpus, topology)
            if settings.cpu.mechanism is CpuMechanism.AUTO:
                why = "; auto: keeping batch off some CPUs delayed online's wake-ups least"
                cap = CpusetCap(cap.cpus, cap.reason + why)
            return cap
        case CpuMechanism.QUOTA:
            quota = max(settings.cpu.quota_min_milli, budget.amount)
            why = f"batch quota {quota}m = batch-cpu {budget.amount}m"
            if quota > budget.amount:
                why += f" raised to the floor of {settings.cpu.quota_min_milli}m"
            return QuotaCap(quota, why)
        case _:  # idle-only
            return None


def decide(
    snapshot: Snapshot, state: BrainState, settings: QosSettings, now: float
) -> tuple[Plan, BrainState]:
    node = snapshot.node
    value, at = _indicator(snapshot, settings)
    margin_state, margin = update_margin(
        state.margin or initial_margin(settings.margin), value, at, settings.margin
    )
    kubelet = snapshot.kubelet_cpus
    if kubelet is not None and kubelet.owns_cpusets:
        layout = kubelet_layout(node, snapshot.cpus, kubelet)
    elif settings.cpu.dedicated_cpusets:
        layout = assign_dedicated(node, snapshot.cpus, state.dedicated, snapshot.topology)
    else:
        layout = CpuLayout((), (), node_cpus(snapshot.cpus, node), ())

    margin_why = f"{format_fraction(margin.fraction)}; {margin.reason}"
    cpu_d, predictor = cpu_demand(
        snapshot.cpu,
        node=node,
        margin_fraction=margin.fraction,
        margin_why=margin_why,
        state=state.predictor,
        settings=settings,
    )
    mem_d, predictor = memory_demand(snapshot.memory, node, predictor, settings)
    cap = node.capacity
    cpu_b, cpu_last = _budget(Resource.CPU, cap.cpu_milli, cpu_d, state.cpu, now, settings)
    mem_b, mem_last = _budget(Resource.MEMORY, cap.memory_bytes, mem_d, state.memory, now, settings)
    gpu_b, gpu_last = None, state.gpu
    gpu_cap = gpu_capacity(snapshot.gpu, node)
    gpu_plan, gpu_evictions, gpus = None, (), state.gpus
    if snapshot.gpu is not None and snapshot.gpu.per_device:
        # Read per GPU: budgets per device, and batch frozen where online surges.
        g = decide_gpus(snapshot.gpu, node, state.gpus, settings, now)
        gpu_plan, gpu_evictions, gpus = g.plan, g.evictions, g.state
        at = reading_time(snapshot.gpu.at)
        if settings.gpu.enabled and (at is None or is_stale(at, now, settings.reclaim)):
            gpu_b = without_fresh_readings(Resource.GPU, gpu_cap, state.gpu, now, settings.reclaim)
        elif settings.gpu.enabled and at is not None:
            gpu_b, gpu_last = g.budget, LastGood(g.budget.amount, at)
    elif settings.gpu.enabled and gpu_cap > 0:
        gpu_d, predictor = gpu_demand(snapshot.gpu, node, predictor, settings)
        gpu_b, gpu_last = _budget(Resource.GPU, gpu_cap, gpu_d, state.gpu, now, settings)
    budgets = Budgets(cpu_b, mem_b, gpu_b)

    fresh_mem_terms = (
        None if mem_b.degraded or is_stale(mem_d.at, now, settings.reclaim) else mem_d.terms
    )
    mechanism = cpu_mechanism(settings)
    idle = None
    if settings.cpu.idle:
        why = (
            "batch pods run as cpu.idle (SCHED_IDLE): online pods beside them in a QoS level "
            "preempt them at once; against besteffort, kubelet's lowest weight decides"
        )
        if mechanism is CpuMechanism.IDLE_ONLY:
            why += "; no CPU cap (idle-only)"
        idle = CpuIdle(True, why)
    tier = BatchTierPlan(
        cpu_idle=idle,
        cpu_cap=_cpu_cap(cpu_b, layout, settings, mechanism, snapshot.topology),
        memory=batch_tier(mem_b, fresh_mem_terms) if settings.memory.enabled else None,
    )
    shared = None
    if layout.by_kubelet and layout.shared != node_cpus(snapshot.cpus, node):
        shared = CpusetCap(
            layout.shared,
            f"shared pool {format_cpus(layout.shared)}: kubelet's static CPU manager "
            "(defaultCpuSet); kubelet owns the exclusive CPUs",
        )
    elif layout.assignments:
        shared = CpusetCap(
            layout.shared,
            f"shared pool {format_cpus(layout.shared)}: all CPUs but the dedicated pods' "
            "exclusive ones",
        )
    outcome = plan_evictions(
        node,
        evidence=_memory_pressure(snapshot, now, settings),
        cpu_budget=cpu_b,
        cpu_at=None if cpu_last is None or cpu_last is state.cpu else cpu_last.at,
        batch_demand_milli=_batch_demand(snapshot, now, settings),
        now=now,
        state=state.eviction,
        settings=settings.eviction,
    )
    plan = Plan(
        now=now,
        budgets=budgets,
        margin=MarginReport(
            margin.fraction,
            round(margin.fraction * node.capacity.cpu_milli),
            margin.indicator,
            margin.reason,
            settings.margin.indicator.value,
            settings.margin.effective_target,
        ),
        extended_resources=tuple(
            ExtendedResource(b.extended_name, b.amount, b.reason) for b in budgets.all()
        ),
        batch_tier=tier,
        shared_cpus=shared,
        dedicated_pods=layout.dedicated,
        online_pods=online_pods(node, settings.memory) if settings.memory.enabled else (),
        batch_pods=batch_pods(node, settings.memory),
        evictions=outcome.evictions + gpu_evictions,
        notes=layout.notes + outcome.notes,
        kubelet_cpusets=layout.by_kubelet,
        io=plan_io(settings.io, snapshot.block_devices),
        gpu=gpu_plan,
    )
    new_state = BrainState(
        predictor=predictor,
        margin=margin_state,
        cpu=cpu_last,
        memory=mem_last,
        gpu=gpu_last,
        eviction=outcome.state,
        dedicated=layout.assignments,
        gpus=gpus,
    )
    return plan, new_state
