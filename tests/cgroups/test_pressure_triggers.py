"""PSI poll triggers on the cgroup2 mount of this hybrid host: armed where the kernel
accepts the window, refused with a reason where it does not, fired by real CPU stall, and
dropped when their cgroup goes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from agent.config import FastPathSettings
from agent.observe.cover import Cover
from agent.observe.fastpath import FastPath
from agent.observe.sampler import Sampler
from isolation.detect import Hierarchy, Mode
from isolation.layout import Driver
from isolation.pressure import PressureTriggers
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.pod import Container, Pod

pytestmark = pytest.mark.cgroup_v1


@pytest.fixture
def tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    if hierarchy.mode is not Mode.HYBRID:
        pytest.skip("needs a cgroup2 mount beside v1 (per-cgroup PSI)")
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as t:
        yield t


def test_a_two_second_trigger_fires_when_the_pod_stalls(tree: KubeletTree) -> None:
    pod = tree.add_pod(Pod("a", "busy", containers=(Container("c"),)))
    cgroup = tree.pod_cgroup(pod)
    triggers = PressureTriggers(tree.cgroups, stall_s=0.1, window_s=2.0)
    try:
        triggers.watch([cgroup])
        assert triggers.armed == 1 and triggers.refused is None
        assert triggers.wait(0.05) == []  # an idle pod does not stall
        for _ in range(len(os.sched_getaffinity(0)) + 1):  # one loop more than CPUs: one waits
            tree.spawn(pod, "c", BUSY_LOOP)
        start = time.monotonic()
        fired: list[str] = []
        while not fired and time.monotonic() - start < 8:
            fired = triggers.wait(1.0)
        assert fired == [cgroup]
        tree.remove_pod(pod)
        triggers.wait(0.1)  # the removed cgroup reports POLLERR: its trigger is dropped
        assert triggers.armed == 0
    finally:
        triggers.close()


def test_a_refused_window_leaves_the_fast_path_on_its_interval_reader(tree: KubeletTree) -> None:
    pod = tree.add_pod(Pod("a", "web", containers=(Container("c"),)))
    settings = FastPathSettings(trigger_window_s=1.0, trigger_stall_s=0.05)
    fast = FastPath(
        settings, tree.cgroups, Sampler(tree.cgroups, "", time.monotonic), time.monotonic
    )
    try:
        cgroup = tree.pod_cgroup(pod)
        fast.arm(Cover((cgroup,), (cgroup,)), 0.0)
        assert fast.triggers is not None
        if fast.triggers.refused is None:  # CAP_SYS_RESOURCE: sub-2-s windows are allowed
            assert fast.mode == "psi-trigger" and fast.triggers.armed == 1
        else:
            assert fast.mode == "interval"
            assert "Invalid argument" in fast.triggers.refused
            assert "PSI triggers refused" in fast.detail and "every 50 ms" in fast.detail
    finally:
        fast.close()
