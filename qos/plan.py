"""`Plan`: the desired state one decision asks for, in abstract terms.

The tick loop translates it into cgroup writes, node-status patches and Eviction API calls.
`None` means "leave alone"; an empty tuple means "nothing of this kind". Every budget and
action carries `reason`, one line a human can check with a calculator.
"""

from __future__ import annotations

from dataclasses import dataclass

from qos.budget import Budget


@dataclass(frozen=True, slots=True)
class ExtendedResource:
    """A value to publish on the Node (`colocd.io/batch-cpu` millicores, `batch-memory`
    bytes, `batch-gpu` hundredths of one GPU)."""

    name: str
    value: int
    reason: str


@dataclass(frozen=True, slots=True)
class CpuIdle:
    """cpu.idle (SCHED_IDLE) on the batch tier; where the kernel lacks it, the lowest weight."""

    enabled: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CpusetCap:
    """Confine the batch tier to these CPUs."""

    cpus: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class QuotaCap:
    """A CFS quota on the batch tier, in millicores."""

    millicores: int
    reason: str


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """memory.high (throttle by reclaim) below memory.max (hard limit); None: leave alone."""

    high_bytes: int | None
    max_bytes: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class BatchTierPlan:
    cpu_idle: CpuIdle | None
    cpu_cap: CpusetCap | QuotaCap | None
    memory: MemoryLimits | None


@dataclass(frozen=True, slots=True)
class BatchPodPlan:
    """Limits for one batch pod from its `colocd.io/batch-*` requests (kubelet sets none:
    to Kubernetes the pod is BestEffort)."""

    pod: str  # namespace/name
    uid: str
    cpu_quota_milli: int | None
    memory: MemoryLimits | None
    reason: str


@dataclass(frozen=True, slots=True)
class OnlinePodPlan:
    """memory.min/low protecting an online (or dedicated) pod's request."""

    pod: str
    uid: str
    memory_min_bytes: int
    memory_low_bytes: int
    reason: str


@dataclass(frozen=True, slots=True)
class DedicatedPodPlan:
    """Exclusive CPUs for a dedicated pod; no other pod, batch above all, gets them."""

    pod: str
    uid: str
    cpus: tuple[int, ...]
    reason: str
    # kubelet's static CPU manager assigned these and owns the pod's cpuset: not written.
    by_kubelet: bool = False


@dataclass(frozen=True, slots=True)
class DeviceLimit:
    """io.max for one block device (`MAJOR:MINOR`); None: no limit of that kind."""

    device: str
    name: str
    rbps: int | None = None
    wbps: int | None = None
    riops: int | None = None
    wiops: int | None = None


@dataclass(frozen=True, slots=True)
class IoPlan:
    """io.weight for the online and batch tiers; io.max on batch for each device."""

    online_weight: int
    batch_weight: int
    batch_limits: tuple[DeviceLimit, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Eviction:
    """Evict this batch pod (last resort). `dry_run` evictions are reported, not executed."""

    pod: str
    uid: str
    priority: int
    dry_run: bool
    reason: str


@dataclass(frozen=True, slots=True)
class GpuDevicePlan:
    """One GPU's share of `colocd.io/batch-gpu` (hundredths of this GPU) and why."""

    index: int
    uuid: str | None
    amount: int
    predicted_online_percent: float | None
    margin_fraction: float
    online_memory_peak_bytes: float | None
    surged: bool
    reason: str


@dataclass(frozen=True, slots=True)
class GpuFreeze:
    """Freeze (`frozen` True) or thaw one batch pod's cgroup; `new` marks a change made by
    this decision (the others are kept frozen)."""

    pod: str
    uid: str
    frozen: bool
    new: bool
    reason: str


@dataclass(frozen=True, slots=True)
class GpuPlan:
    devices: tuple[GpuDevicePlan, ...]
    freezes: tuple[GpuFreeze, ...]  # every batch pod to hold frozen, then this tick's thaws
    notes: tuple[str, ...] = ()
    # This decision's GPU evictions: (pod, why) with why "frozen_too_long" | "gpu_memory".
    evictions: tuple[tuple[str, str], ...] = ()

    @property
    def frozen(self) -> tuple[GpuFreeze, ...]:
        return tuple(f for f in self.freezes if f.frozen)

    @property
    def thawed(self) -> tuple[GpuFreeze, ...]:
        return tuple(f for f in self.freezes if not f.frozen)


@dataclass(frozen=True, slots=True)
class MarginReport:
    fraction: float
    millicores: int
    indicator: float | None
    reason: str
    # Which indicator the controller watched (a `qos.settings.Indicator` value) and the
    # target it held it to, in the indicator's own unit.
    indicator_name: str
    target: float


@dataclass(frozen=True, slots=True)
class Budgets:
    cpu: Budget
    memory: Budget
    gpu: Budget | None  # None: the node has no GPU, or GPU reclaim is off

    def all(self) -> tuple[Budget, ...]:
        return tuple(b for b in (self.cpu, self.memory, self.gpu) if b is not None)


@dataclass(frozen=True, slots=True)
class Plan:
    now: float
    budgets: Budgets
    margin: MarginReport
    extended_resources: tuple[ExtendedResource, ...]
    batch_tier: BatchTierPlan
    # CPUs left to every pod that is not dedicated; None when no CPU is exclusive.
    shared_cpus: CpusetCap | None
    dedicated_pods: tuple[DedicatedPodPlan, ...]
    online_pods: tuple[OnlinePodPlan, ...]
    batch_pods: tuple[BatchPodPlan, ...]
    evictions: tuple[Eviction, ...]
    # What the plan wanted and could not do (a dedicated pod without free cores, an
    # eviction held by its cool-down), one line each.
    notes: tuple[str, ...] = ()
    # kubelet's static CPU manager owns the pods' cpusets: colocd writes cpusets on batch
    # only, within `shared_cpus` (kubelet's defaultCpuSet).
    kubelet_cpusets: bool = False
    io: IoPlan | None = None  # None: IO left alone
    # Per GPU budgets, freezes and thaws; None: no per-device GPU reading (no GPU).
    gpu: GpuPlan | None = None

    @property
    def degraded(self) -> tuple[str, ...]:
        """The reasons of the budgets that were not computed from fresh, complete readings."""
        return tuple(b.reason for b in self.budgets.all() if b.degraded)
