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
        host_cpu, host_memory = psutil.cpu_count() * 1000, psutil.virtual_memory().total
        unset = node_capacity(tree.cgroups, tree.layout)
        assert (unset.cpu_source, unset.memory_source) == (HOST, HOST)
        assert (unset.cpu_milli, unset.memory_bytes) == (host_cpu, host_memory)
        # Nothing is known to be kept outside the host's total.
        assert (unset.cpu_set_aside_milli, unset.memory_set_aside_bytes) == (0, 0)

        # kubelet's --enforce-node-allocatable=pods: allocatable written on kubepods.
        tree.cgroups.write("memory.max", kubepods, GIB)
        tree.cgroups.write("cpu.max", kubepods, CpuMax(150_000, 100_000))
        assert kubepods_limits(tree.cgroups, tree.layout) == (1500, GIB)
        cap = node_capacity(tree.cgroups, tree.layout)
        assert (cap.cpu_milli, cap.memory_bytes) == (1500, GIB)
        assert cap.cpu_source == f"kubepods cpu.max of /{kubepods}"
        assert cap.memory_source == f"kubepods memory.max of /{kubepods}"
        # The rest of the host is what kubelet keeps for node daemons (its reservations).
        assert cap.cpu_set_aside_milli == host_cpu - 1500
        assert cap.memory_set_aside_bytes == host_memory - GIB

        # Configured figures win; the Node's allocatable comes before kubepods' limits.
        # A configured figure has nothing set aside (what lies outside it is unknown).
        cap = node_capacity(tree.cgroups, tree.layout, cpu_milli=1000)
        assert (cap.cpu_milli, cap.cpu_source, cap.cpu_set_aside_milli) == (1000, CONFIGURED, 0)
        assert cap.memory_source.startswith("kubepods memory.max")
        assert cap.memory_set_aside_bytes == host_memory - GIB
        node = NodeCapacity(1800, 3 * GIB, 1, "Node allocatable", "Node allocatable", 200, GIB)
        cap = node_capacity(tree.cgroups, tree.layout, allocatable=node, memory_bytes=2 * GIB)
        assert cap == NodeCapacity(1800, 2 * GIB, 1, "Node allocatable", CONFIGURED, 200, 0)
        assert node_capacity(tree.cgroups, tree.layout, allocatable=node) == node
