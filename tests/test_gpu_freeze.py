"""GpuFreezer's freezes inherited from an earlier run's journal (the real-cgroup crash test is
in cgroups/test_agent_gpu.py): kept while a pod may yet be found, dropped once none is."""

from __future__ import annotations

from dataclasses import replace

from agent.act.gpu_freeze import GpuFreezer
from agent.observe.topology import Topology
from isolation.executor import Level, Write
from isolation.layout import Driver, KubeletLayout
from qos.decide import BrainState, decide
from qos.plan import GpuPlan
from qos.settings import QosSettings
from tests.qos_builders import node, snapshot

GONE = Write("freeze", "kubepods/besteffort/pod-gone", False, Level.POD)


def _plan():
    plan, _ = decide(snapshot(1.0), BrainState(), QosSettings(), 1.0)
    return replace(plan, gpu=GpuPlan((), ()))


def _topology(*missing: str) -> Topology:
    return Topology(KubeletLayout(Driver.CGROUPFS), node(), (0,), missing=missing)


def test_an_inherited_freeze_of_a_pod_not_placed_waits_while_a_pod_is_missing() -> None:
    freezer = GpuFreezer([GONE])
    assert freezer.writes(_plan(), _topology("jobs/not-found-yet")) == []
    assert list(freezer.journaled) == ["kubepods/besteffort/pod-gone"]


def test_an_inherited_freeze_of_a_pod_gone_is_dropped_once_no_pod_is_missing() -> None:
    freezer = GpuFreezer([GONE])
    assert freezer.writes(_plan(), _topology()) == []
    assert freezer.journaled == {}
