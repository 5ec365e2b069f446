"""CPU sets: exclusive cores for dedicated pods, and the CPUs batch may run on.

Dedicated pods keep the cores they were given for as long as they live (moving a pod's
cpuset costs it its caches), new ones take free cores from the top down, and at least one
CPU always stays in the shared pool for system and online pods. Batch, under the cpuset
mechanism, runs on the highest-numbered CPUs of the shared pool, as many as its budget
holds whole cores.

Where colocd picks CPUs itself it picks whole physical cores (hyperthread siblings
together, so no two pods share a core's caches and execution units) and stays on one NUMA
node when the request fits in one (`CpuTopology`, read from sysfs by the agent).

With kubelet's CPU manager on the `static` policy (`KubeletCpus`, from its state file),
kubelet owns the cpusets of Guaranteed containers with whole CPUs: dedicated pods take the
CPUs kubelet assigned them, the shared pool is kubelet's `defaultCpuSet`, and colocd
writes no cpuset on any pod but batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from qos.plan import CpusetCap, DedicatedPodPlan
from qos.state import NodeState, PodState
from qos.tiers import Tier

MIN_SHARED_CPUS = 1


def format_cpus(cpus: Iterable[int]) -> str:
    """Kernel list format: (0, 1, 2, 5) -> '0-2,5'."""
    runs: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


class CpuInfo(NamedTuple):
    """One logical CPU: its physical core (the lowest CPU id among its hyperthread
    siblings) and its NUMA node."""

    cpu: int
    core: int
    node: int = 0


@dataclass(frozen=True, slots=True)
class CpuTopology:
    cpus: tuple[CpuInfo, ...] = ()
    _by_cpu: dict[int, CpuInfo] = field(init=False, repr=False, compare=False)
    _sizes: dict[tuple[int, int], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_cpu", {c.cpu: c for c in self.cpus})
        sizes: dict[tuple[int, int], int] = {}
        for c in self.cpus:
            sizes[c.node, c.core] = sizes.get((c.node, c.core), 0) + 1
        object.__setattr__(self, "_sizes", sizes)

    def info(self, cpu: int) -> CpuInfo:
        """What is known of `cpu`; a CPU not read is its own core on node 0."""
        return self._by_cpu.get(cpu) or CpuInfo(cpu, cpu)

    def core_size(self, node: int, core: int) -> int:
        """How many CPUs (threads) the core has; 1 where it was not read."""
        return self._sizes.get((node, core), 1)


NO_TOPOLOGY = CpuTopology()


@dataclass(frozen=True, slots=True)
class KubeletCpus:
    """kubelet's CPU manager state (`/var/lib/kubelet/cpu_manager_state`): the policy, the
    shared pool (`defaultCpuSet`) and, under `static`, each pod's exclusive CPUs by UID
    (the union of its containers' entries)."""

    policy: str
    shared: tuple[int, ...] = ()
    pods: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def owns_cpusets(self) -> bool:
        return self.policy == "static"


def pick_cpus(
    free: Iterable[int], want: int, topology: CpuTopology = NO_TOPOLOGY
) -> tuple[int, ...]:
    """`want` CPUs of `free`, as whole physical cores as far as possible, on one NUMA node
    when one can hold them; from the top down (the highest node and cores first). A core
    split by an odd request takes the place of a core already split, when there is one."""
    pool = sorted(set(free))
    if want <= 0:
        return ()
    if want >= len(pool):
        return tuple(pool)
    by_node: dict[int, list[int]] = {}
    for cpu in pool:
        by_node.setdefault(topology.info(cpu).node, []).append(cpu)
    fitting = [n for n, cpus in by_node.items() if len(cpus) >= want]
    if fitting:
        # The node with the fewest free CPUs that still fits (keeps big nodes whole for
        # big requests); ties to the highest node.
        node = min(fitting, key=lambda n: (len(by_node[n]), -n))
        return _from_cores(by_node[node], want, topology)
    return _from_cores(pool, want, topology)


def _from_cores(cpus: list[int], want: int, topology: CpuTopology) -> tuple[int, ...]:
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in cpus:
        info = topology.info(cpu)
        cores.setdefault((info.node, info.core), []).append(cpu)
    whole = [k for k, v in cores.items() if len(v) >= topology.core_size(*k)]
    split = [k for k in cores if k not in whole]
    taken: list[int] = []
    # Whole cores from the top down, while a whole core still fits the request.
    for key in sorted(whole, key=lambda k: max(cores[k]), reverse=True):
        if len(cores[key]) <= want - len(taken):
            taken += cores[key]
    # The rest from cores already split, then from the top of what is left.
    rest = [c for k in sorted(split, key=lambda k: max(cores[k]), reverse=True) for c in cores[k]]
    seen = set(taken) | set(rest)
    rest += sorted((c for c in cpus if c not in seen), reverse=True)
    taken += rest[: want - len(taken)]
    return tuple(sorted(taken))


def node_cpus(cpus: tuple[int, ...], node: NodeState) -> tuple[int, ...]:
    """The node's CPU ids: as read, or 0..n-1 from the capacity when they were not read."""
    if cpus:
        return tuple(sorted(set(cpus)))
    return tuple(range(max(1, node.capacity.cpu_milli // 1000)))


def pod_id(pod: PodState) -> str:
    return pod.pod.uid or pod.pod.key


@dataclass(frozen=True, slots=True)
class CpuLayout:
    assignments: tuple[tuple[str, tuple[int, ...]], ...]  # pod id -> exclusive CPUs
    dedicated: tuple[DedicatedPodPlan, ...]
    shared: tuple[int, ...]
    notes: tuple[str, ...]
    by_kubelet: bool = False  # kubelet's static CPU manager owns the pods' cpusets


def assign_dedicated(
    node: NodeState,
    cpus: tuple[int, ...],
    previous: tuple[tuple[str, tuple[int, ...]], ...],
    topology: CpuTopology = NO_TOPOLOGY,
) -> CpuLayout:
    all_cpus = node_cpus(cpus, node)
    kept = dict(previous)
    free = set(all_cpus)
    taken: dict[str, tuple[int, ...]] = {}
    pods = sorted(node.in_tier(Tier.DEDICATED), key=lambda p: p.pod.key)
    need = {pod_id(p): (p.requests.cpu_milli or 0) // 1000 for p in pods}
    for p in pods:
        old = kept.get(pod_id(p), ())
        if len(old) == need[pod_id(p)] and set(old) <= free:
            taken[pod_id(p)] = old
            free -= set(old)
    notes: list[str] = []
    for p in pods:
        pid = pod_id(p)
        if pid in taken:
            continue
        want = need[pid]
        if want < 1 or len(free) - want < MIN_SHARED_CPUS:
            notes.append(
                f"dedicated pod {p.pod.key} needs {want} exclusive CPUs, {len(free)} free "
                f"(keeping {MIN_SHARED_CPUS} shared): it runs in the shared pool"
            )
            continue
        got = pick_cpus(free, want, topology)
        taken[pid] = got
        free -= set(got)
    plans = tuple(
        DedicatedPodPlan(
            pod=p.pod.key,
            uid=p.pod.uid,
            cpus=taken[pod_id(p)],
            reason=(
                f"dedicated pod requests {need[pod_id(p)]} whole CPUs: exclusive "
                f"{format_cpus(taken[pod_id(p)])}{_cores(taken[pod_id(p)], topology)}, "
                "shared by no other pod"
            ),
        )
        for p in pods
        if pod_id(p) in taken
    )
    assignments = tuple(sorted(taken.items()))
    return CpuLayout(assignments, plans, tuple(sorted(free)), tuple(notes))


def _cores(cpus: tuple[int, ...], topology: CpuTopology) -> str:
    """' (2 cores on NUMA node 0)' where the topology was read; '' where it was not."""
    if not topology.cpus:
        return ""
    infos = [topology.info(c) for c in cpus]
    cores = {(i.node, i.core) for i in infos}
    nodes = sorted({i.node for i in infos})
    where = f"NUMA node {nodes[0]}" if len(nodes) == 1 else f"NUMA nodes {format_cpus(nodes)}"
    return f" ({len(cores)} {'core' if len(cores) == 1 else 'cores'} on {where})"


def kubelet_layout(node: NodeState, cpus: tuple[int, ...], kubelet: KubeletCpus) -> CpuLayout:
    """kubelet's static CPU manager owns the exclusive CPUs: dedicated pods take what it
    assigned them (colocd writes none of it), the shared pool is its defaultCpuSet."""
    all_cpus = set(node_cpus(cpus, node))
    shared = tuple(sorted(set(kubelet.shared) & all_cpus)) or tuple(sorted(all_cpus))
    plans: list[DedicatedPodPlan] = []
    assignments: list[tuple[str, tuple[int, ...]]] = []
    notes: list[str] = []
    for p in sorted(node.in_tier(Tier.DEDICATED), key=lambda p: p.pod.key):
        got = kubelet.pods.get(p.pod.uid, ())
        if not got:
            notes.append(
                f"dedicated pod {p.pod.key} has no exclusive CPUs from kubelet's static CPU "
                "manager (not Guaranteed with whole CPUs?): it runs in kubelet's shared pool"
            )
            continue
        why = f"kubelet's static CPU manager assigned {format_cpus(got)}: colocd defers to it"
        plans.append(DedicatedPodPlan(p.pod.key, p.pod.uid, got, why, by_kubelet=True))
        assignments.append((pod_id(p), got))
    return CpuLayout(tuple(sorted(assignments)), tuple(plans), shared, tuple(notes), True)


def batch_cpuset(
    shared: tuple[int, ...],
    budget_milli: int,
    min_cpus: int,
    topology: CpuTopology = NO_TOPOLOGY,
) -> CpusetCap:
    """floor(budget) CPUs of the shared pool from the top, as whole cores (so batch shares
    no core with online), at least `min_cpus`, at most all."""
    whole = budget_milli // 1000
    count = max(1, min(len(shared), max(min_cpus, whole)))
    cpus = pick_cpus(shared, count, topology)
    why = (
        f"batch on {count} of {len(shared)} shared CPUs ({format_cpus(cpus)}): "
        f"batch-cpu {budget_milli}m holds {whole} whole CPUs"
    )
    if whole < count:
        why += f", raised to the floor of {count}"
    elif whole > count:
        why += ", capped at the shared pool"
    return CpusetCap(cpus, why)
