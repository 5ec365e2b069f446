"""Where this tick's pods live: each known pod with its tier and its cgroup, from the pod
source's pods and kubelet's layout (`isolation.discovery`); a `Locator` searches only for
pods it has not found yet.

A pod whose cgroup is not there (not started yet, already gone) is left out and named in
`missing`; a pod whose UID or container ID is outside its grammar is left out and named in
`refused`. Nothing is created.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from isolation.cgroups import Cgroups
from isolation.discovery import discover_pod
from isolation.errors import CgroupGoneError, IsolationError, UnsupportedKnobError, WriteError
from isolation.layout import KubeletLayout
from qos.k8s_qos import QOSClass
from qos.state import NodeState, PodState
from qos.tiers import Tier

__all__ = ["Locator", "PodPlace", "Topology", "locate", "pod_cpus"]


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
    _by_key: dict[str, PodPlace] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {p.key: p for p in self.placed})

    def in_tier(self, *tiers: Tier) -> tuple[PodPlace, ...]:
        return tuple(p for p in self.placed if p.tier in tiers)

    def by_key(self, key: str) -> PodPlace | None:
        return self._by_key.get(key)

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


class Locator:
    """Finds the pods' cgroups, searching only for pods it has not found before.

    kubelet never moves a pod's cgroup, so a pod found once keeps its place while its UID,
    QoS class and container IDs stay the same and its directory is there; pods not found
    are searched for again on every call. Searching costs a resolved path and a directory
    check per hierarchy and container candidate (tens of ms per hundred pods).

    Whether a found pod's directory is still there is checked (one stat) only when the pods
    changed (a new `NodeState`) or when its cgroup could not be read (`lost`): an unchanged
    node costs no look at the tree at all.
    """

    def __init__(self, cgroups: Cgroups, layout: KubeletLayout) -> None:
        self.cgroups = cgroups
        self.layout = layout
        self._found: dict[str, tuple[Hashable, str]] = {}  # pod key -> (identity, cgroup)
        self._node: NodeState | None = None  # the pods of the last call
        self._lost: set[str] = set()  # cgroups found before that could not be read since

    def lost(self, cgroups: Iterable[str]) -> None:
        """These cgroups could not be read (gone?): check them again at the next call."""
        self._lost.update(cgroups)

    def locate(self, node: NodeState) -> Topology:
        placed, missing, refused = [], [], []
        found_now: dict[str, tuple[Hashable, str]] = {}
        trusted = node is self._node  # the same pods as last time: their places stand
        lost, self._lost, self._node = self._lost, set(), node
        for state in node.pods:
            pod = state.pod
            identity = (pod.uid, state.qos_class, tuple(sorted(pod.container_ids.items())))
            known = self._found.get(pod.key)
            check = known is not None and (not trusted or known[1] in lost)
            if (
                known is None
                or known[0] != identity
                or (check and not self.cgroups.exists(known[1]))
            ):
                try:
                    found = discover_pod(pod, self.cgroups, self.layout)
                except IsolationError as err:
                    refused.append(f"pod {pod.key}: {err}")
                    continue
                if found.cgroup is None:
                    missing.append(f"pod {pod.key}: {', '.join(found.missing)} not found")
                    continue
                known = (identity, found.cgroup)
            found_now[pod.key] = known
            placed.append(PodPlace(state, known[1]))
        self._found = found_now
        cpus = pod_cpus(self.cgroups, self.layout)
        return Topology(self.layout, node, cpus, tuple(placed), tuple(missing), tuple(refused))


def locate(node: NodeState, cgroups: Cgroups, layout: KubeletLayout) -> Topology:
    """Every pod's cgroup, searched for now (a `Locator` remembers them between calls)."""
    return Locator(cgroups, layout).locate(node)
