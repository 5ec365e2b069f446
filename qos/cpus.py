"""CPU sets: exclusive cores for dedicated pods, and the CPUs batch may run on.

Dedicated pods keep the cores they were given for as long as they live (moving a pod's
cpuset costs it its caches), new ones take free cores from the top down, and at least one
CPU always stays in the shared pool for system and online pods. Batch, under the cpuset
mechanism, runs on the highest-numbered CPUs of the shared pool, as many as its budget
holds whole cores.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


def assign_dedicated(
    node: NodeState,
    cpus: tuple[int, ...],
    previous: tuple[tuple[str, tuple[int, ...]], ...],
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
        got = tuple(sorted(sorted(free)[-want:]))
        taken[pid] = got
        free -= set(got)
    plans = tuple(
        DedicatedPodPlan(
            pod=p.pod.key,
            uid=p.pod.uid,
            cpus=taken[pod_id(p)],
            reason=(
                f"dedicated pod requests {need[pod_id(p)]} whole CPUs: exclusive "
                f"{format_cpus(taken[pod_id(p)])}, shared by no other pod"
            ),
        )
        for p in pods
        if pod_id(p) in taken
    )
    assignments = tuple(sorted(taken.items()))
    return CpuLayout(assignments, plans, tuple(sorted(free)), tuple(notes))


def batch_cpuset(shared: tuple[int, ...], budget_milli: int, min_cpus: int) -> CpusetCap:
    """The top floor(budget) CPUs of the shared pool, at least `min_cpus`, at most all."""
    whole = budget_milli // 1000
    count = max(1, min(len(shared), max(min_cpus, whole)))
    cpus = tuple(shared[-count:])
    why = (
        f"batch on {count} of {len(shared)} shared CPUs ({format_cpus(cpus)}): "
        f"batch-cpu {budget_milli}m holds {whole} whole CPUs"
    )
    if whole < count:
        why += f", raised to the floor of {count}"
    elif whole > count:
        why += ", capped at the shared pool"
    return CpusetCap(cpus, why)
