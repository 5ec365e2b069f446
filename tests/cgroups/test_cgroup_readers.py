"""Readers: usage, throttling, memory working set, IO and PSI from real cgroups, with None
for what is missing and descriptors that survive a cgroup being replaced."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from isolation.readings import CONTAINER_TICK, EVERYTHING, Pressure, ReadSet
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod

pytestmark = pytest.mark.cgroup_v1


@pytest.fixture
def tree(cgroupfs_tree: KubeletTree) -> KubeletTree:
    """Knobs and readers do not depend on names: one naming is enough here (both namings
    are covered by the discovery and detection tests)."""
    return cgroupfs_tree


@pytest.mark.cgroup_v2
def test_a_busy_container_reads_as_busy(tree: KubeletTree) -> None:
    pod = tree.add_pod(Pod("batch", "busy", containers=(Container("loop"),)))
    loop = tree.container_cgroup(pod, "loop")
    grow = "b = bytearray(8 << 20); print('ready', flush=True)\nwhile True: pass"
    proc = tree.spawn(pod, "loop", [sys.executable, "-c", grow], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    first = tree.cgroups.sample(loop, EVERYTHING)
    time.sleep(0.3)
    second = tree.cgroups.sample(tree.container_cgroup(pod, "loop"), EVERYTHING)
    assert first is not None and second is not None
    assert second.cpu.usage_ns > first.cpu.usage_ns > 0  # type: ignore[operator]
    assert second.cpu.periods is not None and second.cpu.throttled_ns is not None
    mem = second.memory
    assert mem.usage_bytes is not None and mem.usage_bytes > 8 << 20
    assert mem.working_set_bytes is not None and mem.working_set_bytes <= mem.usage_bytes
    assert second.io is not None and second.io.read_bytes is not None
    pod_sample = tree.cgroups.sample(tree.pod_cgroup(pod))
    assert pod_sample is not None and pod_sample.cpu.usage_ns >= second.cpu.usage_ns  # type: ignore[operator]
    # The cheap container read: usage only, the rest None (not read), never 0.
    (cheap,) = tree.cgroups.sample_many([loop], CONTAINER_TICK)
    assert cheap is not None and cheap.cpu.usage_ns and cheap.memory.usage_bytes
    assert cheap.psi is None and cheap.memory.working_set_bytes is None
    if tree.hierarchy.version == 1:
        assert cheap.cpu.throttled_ns is None
    if tree.hierarchy.unified is not None:
        assert second.psi is not None
        assert isinstance(second.psi.cpu, Pressure) and second.psi.cpu.some_total_us is not None


@pytest.mark.cgroup_v2
def test_missing_values_are_none_and_a_vanished_cgroup_reads_as_none(tree: KubeletTree) -> None:
    pod = tree.add_pod(Pod("batch", "short", containers=(Container("c"),)))
    cg = tree.container_cgroup(pod, "c")
    assert tree.cgroups.sample(cg) is not None
    if tree.hierarchy.version == 1:
        # A v1 cgroup with no cgroup2 mirror has no PSI of its own: None, not zeros.
        lone = f"{tree.root}/lonely"
        for mount in tree.hierarchy.v1.values():
            (mount / lone).mkdir()
        sample = tree.cgroups.sample(lone, ReadSet(memory_stat=False))
        assert sample is not None and sample.psi is not None and sample.psi.cpu is None
        assert sample.memory.working_set_bytes is None  # memory.stat not read
    tree.remove_pod(pod)
    assert tree.cgroups.sample(cg) is None


def test_descriptors_are_kept_and_follow_a_recreated_cgroup(tree: KubeletTree) -> None:
    pod = tree.add_pod(Pod("batch", "again", containers=(Container("c"),)))
    cg = tree.container_cgroup(pod, "c")
    cgroups = tree.cgroups
    assert cgroups.sample(cg) is not None
    kept = cgroups.open_files
    assert kept >= 3
    assert cgroups.sample(cg) is not None
    assert cgroups.open_files == kept  # the same descriptors, read again with pread
    # kubelet removes the pod and a new one appears at the same path: fresh files are read.
    uid = pod.uid
    tree.remove_pod(pod)
    again = tree.add_pod(Pod("batch", "again", uid=uid, containers=(Container("c"),),
                             container_ids=pod.container_ids))  # fmt: skip
    assert tree.container_cgroup(again, "c") == cg
    sample = cgroups.sample(cg)
    assert sample is not None and sample.cpu.usage_ns == 0
    cgroups.retain([])
    assert cgroups.open_files == 0
