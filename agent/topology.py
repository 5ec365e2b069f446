"""Where this tick's pods live: each known pod with its tier and its cgroup, found once per
tick from the pod source's pods and kubelet's layout (`isolation.discovery`).

A pod whose cgroup is not there (not started yet, already gone) is left out and named in
`missing`; a pod whose UID or container ID is outside its grammar is left out and named in
`refused`. Nothing is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from isolation.cgroups import Cgroups
from isolation.discovery import discover_pod
from isolation.errors import CgroupGoneError, IsolationError, UnsupportedKnobError, WriteError
from isolation.layout import KubeletLayout
from qos.k8s_qos import QOSClass
from qos.state import NodeState, PodState
from qos.tiers import Tier

__all__ = ["PodPlace", "Topology", "locate", "pod_cpus"]


@dataclass(frozen=True, slots=True)
class PodPlace:
    state: PodState
    cgroup: str

    @property
    def tier(self) -> Tier:
        return self.state.tier

    @property
    def key(self) -> str:
        return self.state.pod.key

    @property
    def qos_class(self) -> QOSClass:
        return self.state.qos_class


@dataclass(frozen=True, slots=True)
class Topology:
    layout: KubeletLayout
    node: NodeState
    cpus: tuple[int, ...]  # the CPUs pods may run on (kubepods' cpuset)
    placed: tuple[PodPlace, ...] = ()
    missing: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()

    def in_tier(self, *tiers: Tier) -> tuple[PodPlace, ...]:
        return tuple(p for p in self.placed if p.tier in tiers)

    def by_key(self, key: str) -> PodPlace | None:
        return next((p for p in self.placed if p.key == key), None)

    @property
    def besteffort(self) -> str:
        return self.layout.qos_cgroup(QOSClass.BEST_EFFORT)

    @property
    def burstable(self) -> str:
        return self.layout.qos_cgroup(QOSClass.BURSTABLE)


def pod_cpus(cgroups: Cgroups, layout: KubeletLayout) -> tuple[int, ...]:
    """kubepods' cpuset (what pods may use); the agent's own affinity where it is unset
    (v2 leaves cpuset.cpus empty to inherit) or unreadable."""
    try:
        cpus = cgroups.read("cpuset.cpus", layout.kubepods()).value
    except (CgroupGoneError, UnsupportedKnobError, WriteError):
        cpus = frozenset()
    return tuple(sorted(cpus or os.sched_getaffinity(0)))


def locate(node: NodeState, cgroups: Cgroups, layout: KubeletLayout) -> Topology:
    placed, missing, refused = [], [], []
    for state in node.pods:
        try:
            found = discover_pod(state.pod, cgroups, layout)
        except IsolationError as err:
            refused.append(f"pod {state.pod.key}: {err}")
            continue
        if found.cgroup is None:
            missing.append(f"pod {state.pod.key}: {', '.join(found.missing)} not found")
            continue
        placed.append(PodPlace(state, found.cgroup))
    return Topology(
        layout, node, pod_cpus(cgroups, layout), tuple(placed), tuple(missing), tuple(refused)
    )
