"""Plan -> freezer writes for batch pods on a GPU where online surges (`qos.gpu`).

`freeze` is the knob table's (v1 `freezer.state`, v2 `cgroup.freeze`) on the pod's cgroup,
through the executor, so the original (thawed) state is journaled and `revert` thaws. Only
pods the topology places in the batch tier are ever frozen, whatever the plan says; a pod
this agent froze and the plan no longer holds frozen is thawed while its cgroup is still
placed (a pod deleted and created again under its name has a new cgroup). So is a pod an
earlier run froze (the journal holds its original): a crash must not leave it frozen for
good.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.observe.topology import Topology
from isolation.executor import Level, Write
from isolation.layout import normalize_cgroup
from qos.plan import Plan
from qos.tiers import Tier

__all__ = ["GpuFreezer"]


class GpuFreezer:
    def __init__(self, journaled: Iterable[Write] = ()) -> None:
        """`journaled`: the writes that restore each freeze an earlier run journaled; the
        first tick with a GPU plan that places their pod restores those it does not hold
        frozen. One whose pod is not placed while no pod is missing is of a pod gone."""
        self.frozen: set[str] = set()  # the pod cgroups this agent froze
        self.journaled = {normalize_cgroup(w.cgroup): w for w in journaled}

    def writes(self, plan: Plan, topo: Topology) -> list[Write]:
        """No GPU plan (NVML could not be read this tick) is no evidence that online
        receded: what is frozen stays frozen."""
        if plan.gpu is None:
            return [Write("freeze", cgroup, True, Level.POD) for cgroup in sorted(self.frozen)]
        want: set[str] = set()
        for f in plan.gpu.frozen:
            place = topo.by_key(f.pod)
            if place is not None and place.tier is Tier.BATCH:
                want.add(place.cgroup)
        out = [Write("freeze", cgroup, True, Level.POD) for cgroup in sorted(want)]
        if released := self.frozen - want:  # only then is the set of placed cgroups needed
            placed = {p.cgroup for p in topo.placed}
            out += [Write("freeze", c, False, Level.POD) for c in sorted(released) if c in placed]
        if self.journaled:  # the journal's cgroups are normalized: compare like with like
            held = {normalize_cgroup(c) for c in want}
            normal = {normalize_cgroup(p.cgroup) for p in topo.placed}
            out += [w for c, w in self.journaled.items() if c in normal and c not in held]
            left = {c: w for c, w in self.journaled.items() if c not in normal}
            self.journaled = left if topo.missing else {}
        self.frozen = want
        return out
