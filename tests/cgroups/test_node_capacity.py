"""The node's capacity as kubelet sees it on a bare host: kubepods' own limits on real
cgroups when set, the host's totals when not, configured figures over both."""

from __future__ import annotations

import psutil
import pytest

from agent.observe.capacity import CONFIGURED, HOST, kubepods_limits, node_capacity
from isolation.detect import Hierarchy
from isolation.knobs import CpuMax
from isolation.layout import Driver
from lab.kubelet_tree import KubeletTree
from qos.state import NodeCapacity

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.cgroup_v2]

GIB = 1 << 30


def test_kubepods_limits_come_before_the_host_totals(hierarchy: Hierarchy) -> None:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        kubepods = tree.layout.kubepods()
        unset = node_capacity(tree.cgroups, tree.layout)
        assert (unset.cpu_source, unset.memory_source) == (HOST, HOST)
        assert unset.cpu_milli == psutil.cpu_count() * 1000
        assert unset.memory_bytes == psutil.virtual_memory().total

        # kubelet's --enforce-node-allocatable=pods: allocatable written on kubepods.
        tree.cgroups.write("memory.max", kubepods, GIB)
        tree.cgroups.write("cpu.max", kubepods, CpuMax(150_000, 100_000))
        assert kubepods_limits(tree.cgroups, tree.layout) == (1500, GIB)
        cap = node_capacity(tree.cgroups, tree.layout)
        assert (cap.cpu_milli, cap.memory_bytes) == (1500, GIB)
        assert cap.cpu_source == f"kubepods cpu.max of /{kubepods}"
        assert cap.memory_source == f"kubepods memory.max of /{kubepods}"

        # Configured figures win; the Node's allocatable comes before kubepods' limits.
        cap = node_capacity(tree.cgroups, tree.layout, cpu_milli=1000)
        assert (cap.cpu_milli, cap.cpu_source) == (1000, CONFIGURED)
        assert cap.memory_source.startswith("kubepods memory.max")
        node = NodeCapacity(1800, 3 * GIB, 1, "Node allocatable", "Node allocatable")
        cap = node_capacity(tree.cgroups, tree.layout, allocatable=node, memory_bytes=2 * GIB)
        assert cap == NodeCapacity(1800, 2 * GIB, 1, "Node allocatable", CONFIGURED)
