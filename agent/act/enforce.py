"""Plan -> cgroup writes (`isolation.executor.Write`), on the cgroups discovery found.

    batch pods     cpu.idle on each batch pod's own cgroup (or cpu.shares 2 where the
                   kernel has no cpu.idle); cpu.max from colocd.io/batch-cpu,
                   memory.high/max from batch-memory.
    batch tier     kubepods/besteffort: the CPU cap (cpuset.cpus on it, and on v1 on every
                   cgroup below it, since a v1 cpuset child must stay inside its parent; or
                   cpu.max), and memory.high / memory.max (v1, which has no memory.high:
                   memory.max at the budget). Batch pods outside besteffort get the same per
                   pod. If an online pod sits in besteffort (annotated), besteffort gets its
                   originals back and every batch pod is treated on its own instead.
    online pods    memory.min / memory.low (cgroup v1 has neither: `unsupported`), on
                   the pod and on its containers (where the memory is charged), and on
                   every ancestor up to kubepods the sum of what its protected children
                   carry: cgroup-v2.rst bounds a cgroup's effective protection by its
                   parent's, so a pod's memory.min under a QoS level with none protects
                   nothing. Never below the memory.min kubelet's MemoryQoS gate writes on
                   burstable and kubepods (their pods' memory requests), so that with the
                   gate on both write the same figure.
    IO             io.weight on the batch targets and on online/dedicated pods, io.max on
                   the batch targets (v1: on every cgroup below them, see `_io`).
    dedicated      each pod's cpuset; every other pod, and the burstable level, get the
                   shared pool. Under kubelet's static CPU manager none of it: kubelet
                   owns those cpusets (batch still stays within its shared pool).

Why nothing goes on the QoS levels that kubelet rewrites. kubelet's QoS container manager
(pkg/kubelet/cm/qos_container_manager_linux.go, UpdateCgroups) rewrites kubepods,
kubepods/burstable and kubepods/besteffort at start, every minute
(periodicQOSCgroupUpdateInterval) and on every pod sync; through libcontainer's Set it
writes cpu.shares (v1) or cpu.weight (v2: besteffort 2 shares -> 1, burstable from the sum
of its pods' CPU requests), hugetlb limits, memory.min on burstable and kubepods with the
MemoryQoS gate, and memory.limit_in_bytes / memory.max on burstable and besteffort with
QOSReserved. It never writes cpu.idle, cpu.max, cpuset.cpus or memory.high there. The
kernel refuses a weight write on a group whose cpu.idle is 1 (sched_group_set_shares:
EINVAL), and UpdateCgroups returns at the first level whose Update fails; Go visits the
three levels in random order, so cpu.idle on besteffort would also cost burstable its
weight update in the minutes where besteffort comes first. So cpu.idle goes on each batch
pod (kubelet writes a pod's weight only when it creates or resizes the pod, and lowers it
with ReduceCPULimits, whose failure it only logs, when the pod is being killed); the cap
and memory.high stay on besteffort, where kubelet does not write. memory.max on besteffort
meets kubelet only with QOSReserved (alpha, off by default), which then sets it to its own
figure until colocd's next forced rewrite. What per-pod cpu.idle gives up: the scheduler
decides wake-up preemption between the entities where online's and batch's ancestors meet
(burstable and besteffort under kubepods), and an idle pod does not make besteffort idle
there; besteffort keeps kubelet's lowest weight instead, and the idle pods still leave
their CPUs counted as idle when a waking task picks a CPU (sched_idle_cpu).

`None` in the plan leaves a setting alone. What only protects online is written to online
cgroups (memory protection, the shared pool); everything that holds back is written to
batch cgroups, so an agent that stops or crashes leaves batch capped and online untouched.
A per-pod setting colocd made and no longer wants (the pod left the batch tier, the last
dedicated pod went) gets its journaled original back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.observe.topology import Topology
from isolation.cgroups import Cgroups
from isolation.errors import CgroupGoneError, UnsupportedKnobError, WriteError
from isolation.executor import Executor, Level, Write
from isolation.knobs import CpuMax, IoLimit, looser
from qos.k8s_qos import QOSClass
from qos.plan import CpusetCap, MemoryLimits, Plan, QuotaCap
from qos.tiers import Tier
from qos.units import Unit, format_amount

__all__ = ["CFS_PERIOD_US", "Enforcer", "Targets", "batch_targets"]

CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1000  # the kernel's smallest CFS quota
LOWEST_SHARES = 2  # kubelet's BestEffort weight: the fallback where cpu.idle is missing
TIER_KNOBS = ("cpu.max", "memory.high", "memory.max")
LEGACY_TIER_KNOBS = ("cpu.idle", "cpu.shares")  # colocd put these on besteffort before


@dataclass(frozen=True, slots=True)
class Targets:
    """The cgroups that carry the batch tier's settings, each with its level."""

    cgroups: tuple[tuple[str, int], ...]
    tier_level: bool  # besteffort carries them (False: an online pod lives there)
    note: str = ""


def batch_targets(topo: Topology) -> Targets:
    be = topo.besteffort
    strangers = [
        p.key
        for p in topo.placed
        if p.qos_class is QOSClass.BEST_EFFORT and p.tier is not Tier.BATCH
    ]
    batch = topo.in_tier(Tier.BATCH)
    if strangers:
        note = (
            f"{', '.join(strangers)} in {be} is not batch: batch settings go on each batch "
            "pod instead of the besteffort level"
        )
        return Targets(tuple((p.cgroup, Level.POD) for p in batch), False, note)
    outside = [(p.cgroup, Level.POD) for p in batch if p.qos_class is not QOSClass.BEST_EFFORT]
    return Targets(((be, Level.QOS), *outside), True)


def _memory(cgroup: str, limits: MemoryLimits | None, level: int) -> list[Write]:
    if limits is None:
        return []
    out = []
    if limits.high_bytes is not None:
        out.append(Write("memory.high", cgroup, limits.high_bytes, level))
    if limits.max_bytes is not None:
        out.append(Write("memory.max", cgroup, limits.max_bytes, level))
    return out


def _quota(millicores: int) -> CpuMax:
    return CpuMax(max(MIN_QUOTA_US, millicores * CFS_PERIOD_US // 1000), CFS_PERIOD_US)


def _exceeds(value: object, quota: CpuMax) -> bool:
    """A set quota larger than `quota` (no quota below a limited parent is fine)."""
    cores = value.cores if isinstance(value, CpuMax) else None
    return cores is not None and quota.cores is not None and cores > quota.cores


def _looser_than(a: Write, b: Write) -> bool:
    """Of two limits on one file, is `a` the looser (so `b` should be kept)? The knob table's
    rule decides; only CPU quotas and memory limits are compared, other values keep the first."""
    if not (isinstance(a.value, CpuMax) or a.knob.startswith("memory.")):
        return False
    return a.value != b.value and looser(a.value, b.value) == a.value


class _Batch:
    """Writes keyed by (cgroup, knob): of two limits on one file the tighter is kept, of
    two other values the first."""

    def __init__(self) -> None:
        self.writes: dict[tuple[str, str], Write] = {}

    def add(self, writes: Iterable[Write]) -> None:
        for w in writes:
            key = (w.cgroup, w.knob)
            old = self.writes.get(key)
            if old is None or _looser_than(old, w):
                self.writes[key] = w


class Enforcer:
    def __init__(self, cgroups: Cgroups, executor: Executor | None) -> None:
        self.cgroups = cgroups
        self.executor = executor
        self._knobs: dict[str, bool] = {}  # knobs probed on besteffort: does the kernel have it
        # Per-pod settings written last time: released when no longer wanted.
        self._owned: dict[tuple[str, str], int] = {}
        self.notes: tuple[str, ...] = ()  # what the last `writes` could not do as planned
        self._io_limited = False  # batch io.max limits are in force
        self._walked_for: object = None  # the NodeState the cached walks belong to
        self._walks: dict[tuple[str, str], list[str]] = {}
        self._targets_for: tuple[Topology, Targets] | None = None

    def _targets(self, topo: Topology) -> Targets:
        """`batch_targets(topo)`, found once per topology (a tick asks several times)."""
        if self._targets_for is None or self._targets_for[0] is not topo:
            self._targets_for = (topo, batch_targets(topo))
        return self._targets_for[1]

    # --- the parts -------------------------------------------------------------------

    def _supported(self, knob: str, cgroup: str) -> bool | None:
        """Whether the kernel has `knob` (probed once); None: cannot tell yet."""
        if knob not in self._knobs:
            try:
                self.cgroups.read(knob, cgroup)
                self._knobs[knob] = True
            except UnsupportedKnobError:
                self._knobs[knob] = False
            except (CgroupGoneError, WriteError):
                return None
        return self._knobs[knob]

    def idle_supported(self, topo: Topology) -> bool:
        """cpu.idle exists (or cannot be told yet: try it, the executor reports the outcome)."""
        return self._supported("cpu.idle", topo.besteffort) is not False

    def _tier_memory(self, topo: Topology, limits: MemoryLimits | None) -> list[Write]:
        """The batch tier's memory.high/max. Without memory.high (cgroup v1) nothing can
        throttle batch by reclaim before its hard limit, which then sits at the budget, so
        batch is held where v2 would start throttling it: what was offered to it, with the
        budget's headroom below the point where kubepods as a whole would reclaim (and take
        online's cache)."""
        be = topo.besteffort
        high = None if limits is None else limits.high_bytes
        if high is None or self._supported("memory.high", be) is not False:
            return _memory(be, limits, Level.QOS)
        self.notes += (
            f"no memory.high here (cgroup v1): {be} gets memory.max "
            f"{format_amount(high, Unit.BYTES)} (the budget) instead",
        )
        return [Write("memory.max", be, high, Level.QOS)]

    def _structure(self, topo: Topology) -> None:
        """Forget the walked subtrees when the pods (or their containers) changed: the tree
        below a pod only changes with them, so a tick walks only what is new."""
        if self._walked_for is not topo.node:
            self._walked_for, self._walks = topo.node, {}

    def _subtree(
        self, cgroup: str, level: int, controller: str = "cpuset"
    ) -> list[tuple[str, int]]:
        """`cgroup` and every cgroup below it in `controller`'s hierarchy, with levels."""
        key = (controller, cgroup)
        if key not in self._walks:
            self._walks[key] = self.cgroups.walk(controller, cgroup)
        out = []
        for path in self._walks[key]:
            depth = path.count("/") - cgroup.count("/") if path != cgroup else 0
            out.append((path, min(Level.CONTAINER, level + depth)))
        return out or [(cgroup, level)]

    def _cpuset(self, cgroup: str, level: int, cpus: Iterable[int]) -> list[Write]:
        """`cpus` on `cgroup`; on v1 on every cgroup below it too (a v1 child must stay
        inside its parent; a v2 child's effective CPUs follow its parent's by themselves)."""
        value = frozenset(cpus)
        if self.cgroups.version == 2:
            return [Write("cpuset.cpus", cgroup, value, level)]
        return [Write("cpuset.cpus", c, value, lvl) for c, lvl in self._subtree(cgroup, level)]

    def _quotas_below(self, cgroup: str, level: int, quota: CpuMax) -> list[Write]:
        """v1 refuses a parent quota below a child's (EINVAL): the cgroups below `cgroup`
        whose quota is larger come down to it (kubelet's container limits, batch pods')."""
        out = []
        for path, lvl in self._subtree(cgroup, level, "cpu")[1:]:
            try:
                current = self.cgroups.read("cpu.max", path).value
            except (CgroupGoneError, UnsupportedKnobError, WriteError):
                continue
            if _exceeds(current, quota):
                out.append(Write("cpu.max", path, quota, lvl))
        return out

    def cap_writes(
        self, cap: CpusetCap | QuotaCap | None, topo: Topology, pool: tuple[int, ...]
    ) -> list[Write]:
        """The batch tier's CPU cap on its targets; `pool` is what batch may use uncapped
        (the shared CPUs). A quota is split evenly where several targets carry it."""
        self._structure(topo)
        targets = self._targets(topo).cgroups
        out: list[Write] = []
        for cgroup, level in targets:
            match cap:
                case CpusetCap(cpus=cpus):
                    out += self._cpuset(cgroup, level, cpus)
                    out.append(Write("cpu.max", cgroup, CpuMax(None, CFS_PERIOD_US), level))
                case QuotaCap(millicores=milli):
                    quota = _quota(milli // len(targets))
                    out.append(Write("cpu.max", cgroup, quota, level))
                    out += self._quotas_below(cgroup, level, quota)
                    out += self._cpuset(cgroup, level, pool)
                case None if pool != topo.cpus:
                    out += self._cpuset(cgroup, level, pool)  # keep batch off exclusive CPUs
        return out

    def _batch_tier(self, plan: Plan, topo: Topology, pool: tuple[int, ...]) -> list[Write]:
        targets = self._targets(topo)
        tier = plan.batch_tier
        out: list[Write] = []
        if tier.cpu_idle is not None:
            idle = self.idle_supported(topo)
            for p in topo.in_tier(Tier.BATCH):  # never a QoS level: kubelet rewrites those
                if idle:
                    out.append(Write("cpu.idle", p.cgroup, tier.cpu_idle.enabled, Level.POD))
                elif tier.cpu_idle.enabled:
                    out.append(Write("cpu.shares", p.cgroup, LOWEST_SHARES, Level.POD))
        out += self.cap_writes(tier.cpu_cap, topo, pool)
        if targets.tier_level:
            out += self._tier_memory(topo, tier.memory)
        return out

    def _released_besteffort(self, topo: Topology, pool: tuple[int, ...]) -> list[Write]:
        """An online pod lives in besteffort: its tier-level settings go back."""
        if self.executor is None:
            return []
        be = topo.besteffort
        out = [self.executor.restore_write(be, k, Level.QOS) for k in TIER_KNOBS]
        return [w for w in out if w is not None] + self._cpuset(be, Level.QOS, pool)

    def _legacy_idle(self, topo: Topology) -> list[Write]:
        """cpu.idle (and the shares it pinned) that an earlier colocd set on besteffort,
        where kubelet's weight writes then fail: its original goes back."""
        if self.executor is None:
            return []
        be = topo.besteffort
        out = [self.executor.restore_write(be, k, Level.QOS) for k in LEGACY_TIER_KNOBS]
        return [w for w in out if w is not None]

    def _protection(self, plan: Plan, topo: Topology) -> list[Write]:
        """Each protected pod's memory.min/low, and on every ancestor up to kubepods the sum
        over the protected pods below it (a child's effective protection is bounded by its
        parent's), never below what kubelet's MemoryQoS writes there: with that gate on,
        kubelet and colocd then write the same figure and never undo each other."""
        kubepods = topo.layout.kubepods()
        out: list[Write] = []
        sums: dict[str, tuple[int, int]] = {}
        for op in plan.online_pods:
            place = topo.by_key(op.pod)
            if place is None:
                continue
            if self._supported("memory.min", kubepods) is False:  # v1: reported once per pod
                out.append(Write("memory.min", place.cgroup, op.memory_min_bytes, Level.POD))
                out.append(Write("memory.low", place.cgroup, op.memory_low_bytes, Level.POD))
                continue
            # The pod and every cgroup below it, where its memory is charged: without the
            # memory_recursiveprot mount option (systemd sets it, a plain mount does not) a
            # child with no protection of its own gets none of its parent's. Each child
            # claims the pod's whole figure; the kernel shares the pod's among them by use.
            for cgroup, level in self._subtree(place.cgroup, Level.POD, "memory"):
                out.append(Write("memory.min", cgroup, op.memory_min_bytes, level))
                out.append(Write("memory.low", cgroup, op.memory_low_bytes, level))
            cgroup = place.cgroup
            while cgroup.startswith(kubepods + "/"):
                cgroup = cgroup.rsplit("/", 1)[0]
                floor, low = sums.get(cgroup, (0, 0))
                sums[cgroup] = (floor + op.memory_min_bytes, low + op.memory_low_bytes)
        kubelet = _memory_qos_floors(topo)
        for cgroup, (pods_min, pods_low) in sums.items():
            floor = max(pods_min, kubelet.get(cgroup, 0))
            level = Level.NODE if cgroup == kubepods else Level.QOS
            out += [
                Write("memory.min", cgroup, floor, level),
                Write("memory.low", cgroup, max(pods_low, floor), level),
            ]
        return out

    def _pods(self, plan: Plan, topo: Topology) -> list[Write]:
        out: list[Write] = []
        for bp in plan.batch_pods:
            place = topo.by_key(bp.pod)
            if place is None:
                continue
            if bp.cpu_quota_milli is not None:
                out.append(Write("cpu.max", place.cgroup, _quota(bp.cpu_quota_milli), Level.POD))
            out += _memory(place.cgroup, bp.memory, Level.POD)
        return out + self._protection(plan, topo)

    def _cpu_pools(self, plan: Plan, topo: Topology) -> list[Write]:
        if plan.kubelet_cpusets:
            return []  # kubelet's static CPU manager owns every pod's cpuset but batch's
        out: list[Write] = []
        dedicated = {d.pod for d in plan.dedicated_pods}
        for d in plan.dedicated_pods:
            place = topo.by_key(d.pod)
            if place is not None:
                out += self._cpuset(place.cgroup, Level.POD, d.cpus)
        if plan.shared_cpus is None:
            return out
        shared = plan.shared_cpus.cpus
        out += self._cpuset(topo.burstable, Level.QOS, shared)
        for p in topo.placed:
            if p.key in dedicated or p.tier is Tier.BATCH:
                continue
            if p.qos_class is not QOSClass.BURSTABLE:  # burstable pods are below, done
                out += self._cpuset(p.cgroup, Level.POD, shared)
        return out

    def _io(self, plan: Plan, topo: Topology) -> list[Write]:
        """io.weight on the batch targets and on each online and dedicated pod; io.max on
        the batch targets. v1's blk-throttle is not hierarchical (a limit on besteffort
        does not hold a process in a pod below it; measured here), so on v1 io.max goes on
        every cgroup of the batch subtrees; v2's io.max holds the whole subtree."""
        io = plan.io
        if io is None:
            return []
        targets = self._targets(topo).cgroups
        out: list[Write] = []
        if self._supported("io.weight", topo.besteffort) is False:
            self.notes += (
                f"io.weight: {self.cgroups.unsupported('io.weight') or 'no such file here'}"
                " (v1: blkio.bfq.weight needs the BFQ scheduler): IO weights not written",
            )
        else:
            out += [Write("io.weight", c, io.batch_weight, lvl) for c, lvl in targets]
            out += [
                Write("io.weight", p.cgroup, io.online_weight, Level.POD)
                for p in topo.in_tier(Tier.ONLINE, Tier.DEDICATED)
            ]
        # Once limits were written, no limits is written too (lifting them).
        if io.batch_limits or self._io_limited:
            self._io_limited = bool(io.batch_limits)
            limits = tuple(
                IoLimit(d.device, d.rbps, d.wbps, d.riops, d.wiops) for d in io.batch_limits
            )
            # v1 without a blkio mount: the executor reports the writes unsupported.
            subtree = self.cgroups.version == 1 and self.cgroups.unsupported("io.max") is None
            for cgroup, level in targets:
                where = self._subtree(cgroup, level, "blkio") if subtree else [(cgroup, level)]
                out += [Write("io.max", c, limits, lvl) for c, lvl in where]
        return out

    # --- the whole plan ----------------------------------------------------------------

    def writes(self, plan: Plan, topo: Topology) -> list[Write]:
        """Every write the plan asks for, plus the release of per-pod settings colocd made
        earlier and no longer wants. Remembers what it owns for the next call."""
        pool = plan.shared_cpus.cpus if plan.shared_cpus is not None else topo.cpus
        self._structure(topo)
        targets = self._targets(topo)
        self.notes = (targets.note,) if targets.note else ()
        be = topo.besteffort

        def tier_level(w: Write) -> bool:
            """Besteffort's own settings (and its subtree's cpusets) follow the plan (None:
            left alone) and are never released; quotas brought down below it are owned."""
            below = w.cgroup.startswith(be + "/") and w.knob == "cpuset.cpus"
            return targets.tier_level and (w.cgroup == be or below)

        batch = self._batch_tier(plan, topo, pool)
        merged = _Batch()
        merged.add(w for w in batch if tier_level(w))
        owned = [w for w in batch if not tier_level(w)]
        owned += self._pods(plan, topo) + self._cpu_pools(plan, topo)
        io = self._io(plan, topo)
        merged.add(w for w in io if tier_level(w))
        owned += [w for w in io if not tier_level(w)]
        merged.add(owned)
        if not targets.tier_level:  # after the pods': their cpusets win below besteffort
            merged.add(self._released_besteffort(topo, pool))
        merged.add(self._legacy_idle(topo))
        wanted = _fit_quotas(list(merged.writes.values()), merged.writes)
        restores = self._release(set(merged.writes), topo)
        released = _fit_quotas(restores, merged.writes)
        self._owned = {(w.cgroup, w.knob): w.level for w in owned}
        # An original that still had to be brought under a quota is released again later.
        self._owned |= {
            (w.cgroup, w.knob): w.level
            for w, r in zip(released, restores, strict=True)
            if w.value != r.value
        }
        return [*wanted, *released]

    def _release(self, keep: set[tuple[str, str]], topo: Topology) -> list[Write]:
        if self.executor is None:
            return []
        out = []
        for (cgroup, knob), level in self._owned.items():
            if (cgroup, knob) in keep or not self.cgroups.exists(cgroup):
                continue
            w = self.executor.restore_write(cgroup, knob, level)
            if w is not None:
                out.append(w)
        return out


def _memory_qos_floors(topo: Topology) -> dict[str, int]:
    """The memory.min kubelet's MemoryQoS gives the QoS levels (setMemoryQoS): burstable the
    memory requests of its pods, kubepods those of the guaranteed and burstable pods."""
    requests = {QOSClass.GUARANTEED: 0, QOSClass.BURSTABLE: 0}
    for p in topo.node.pods:
        if p.qos_class in requests:
            requests[p.qos_class] += p.requests.memory_bytes or 0
    burstable = requests[QOSClass.BURSTABLE]
    return {
        topo.burstable: burstable,
        topo.layout.kubepods(): burstable + requests[QOSClass.GUARANTEED],
    }


def _fit_quotas(writes: list[Write], wanted: dict[tuple[str, str], Write]) -> list[Write]:
    """No quota written below a parent's quota of this batch may exceed it (v1: EINVAL)."""
    limits = {
        w.cgroup: w.value
        for w in wanted.values()
        if w.knob == "cpu.max" and isinstance(w.value, CpuMax) and w.value.quota_us is not None
    }
    if not limits:
        return writes
    out = []
    for w in writes:
        fitted = w
        if w.knob == "cpu.max":
            for parent, quota in limits.items():
                if w.cgroup.startswith(parent + "/") and _exceeds(fitted.value, quota):
                    fitted = Write(w.knob, w.cgroup, quota, w.level)
        out.append(fitted)
    return out
