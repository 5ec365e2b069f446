"""GpuFreezer's freezes and thaws by pod cgroup, and those inherited from an earlier run's
journal (the real-cgroup tests are in cgroups/test_agent_gpu.py): inherited ones are kept
while a pod may yet be found, dropped once none is."""

from __future__ import annotations

from dataclasses import replace

from agent.act.gpu_freeze import GpuFreezer
from agent.observe.topology import PodPlace, Topology
from isolation.executor import Level, Write
from isolation.layout import Driver, KubeletLayout
from qos.decide import BrainState, decide
from qos.plan import GpuFreeze, GpuPlan
from qos.settings import QosSettings
from tests.qos_builders import node, pod, snapshot

GONE = Write("freeze", "kubepods/besteffort/pod-gone", False, Level.POD)


def _plan(*frozen: str):
    plan, _ = decide(snapshot(1.0), BrainState(), QosSettings(), 1.0)
    freezes = tuple(GpuFreeze(f"default/{name}", f"uid-{name}", True, False, "") for name in frozen)
    return replace(plan, gpu=GpuPlan((), freezes))


def _topology(*missing: str, placed: tuple[tuple[str, str], ...] = ()) -> Topology:
    """`placed`: (pod name, its cgroup), each a batch pod."""
    pods = [pod(name, tier="batch") for name, _ in placed]
    state = node(*pods)
    places = tuple(
        PodPlace(next(p for p in state.pods if p.pod.name == name), cgroup)
        for name, cgroup in placed
    )
    return Topology(KubeletLayout(Driver.CGROUPFS), state, (0,), places, missing=missing)


def _freeze(cgroup: str, on: bool) -> Write:
    return Write("freeze", cgroup, on, Level.POD)


def test_a_pod_the_plan_no_longer_holds_frozen_is_thawed() -> None:
    freezer = GpuFreezer()
    placed = (("crunch", "kubepods/besteffort/pod-a"),)
    assert freezer.writes(_plan("crunch"), _topology(placed=placed)) == [
        _freeze("kubepods/besteffort/pod-a", True)
    ]
    assert freezer.writes(_plan(), _topology(placed=placed)) == [
        _freeze("kubepods/besteffort/pod-a", False)
    ]


def test_a_pod_created_again_under_a_frozen_pods_name_gets_no_thaw_of_the_old_cgroup() -> None:
    freezer = GpuFreezer()
    freezer.writes(_plan("crunch"), _topology(placed=(("crunch", "kubepods/besteffort/pod-a"),)))
    again = _topology(placed=(("crunch", "kubepods/besteffort/pod-b"),))
    assert freezer.writes(_plan(), again) == []  # pod-a is gone: nothing to thaw there
    assert freezer.writes(_plan("crunch"), again) == [_freeze("kubepods/besteffort/pod-b", True)]


def test_an_inherited_freeze_of_a_pod_not_placed_waits_while_a_pod_is_missing() -> None:
    freezer = GpuFreezer([GONE])
    assert freezer.writes(_plan(), _topology("jobs/not-found-yet")) == []
    assert list(freezer.journaled) == ["kubepods/besteffort/pod-gone"]


def test_an_inherited_freeze_of_a_pod_gone_is_dropped_once_no_pod_is_missing() -> None:
    freezer = GpuFreezer([GONE])
    assert freezer.writes(_plan(), _topology()) == []
    assert freezer.journaled == {}
