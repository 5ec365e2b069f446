"""The CPUs' physical layout from sysfs: each CPU's core (hyperthread siblings) and NUMA node.

    /sys/devices/system/cpu/cpuN/topology/thread_siblings_list   "0,4" -> core 0
    /sys/devices/system/cpu/cpuN/nodeM                            (link) -> NUMA node M

The core is named by the lowest CPU id among the siblings, so it is unique across packages.
A CPU whose files cannot be read is left out (`qos.cpus.CpuTopology` then treats it as its
own core on node 0). The root is a constructor argument so tests can lay out a machine.
"""

from __future__ import annotations

import re
from pathlib import Path

from isolation.knobs import parse_cpuset
from qos.cpus import CpuInfo, CpuTopology

__all__ = ["SYSFS_CPU_ROOT", "read_topology"]

SYSFS_CPU_ROOT = Path("/sys/devices/system/cpu")
_CPU = re.compile(r"cpu(\d+)")
_NODE = re.compile(r"node(\d+)")


def _node(cpu_dir: Path) -> int:
    for entry in cpu_dir.iterdir():
        m = _NODE.fullmatch(entry.name)
        if m:
            return int(m.group(1))
    return 0


def read_topology(root: Path = SYSFS_CPU_ROOT) -> CpuTopology:
    cpus = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return CpuTopology()
    for entry in entries:
        m = _CPU.fullmatch(entry.name)
        if m is None:
            continue
        try:
            siblings = parse_cpuset((entry / "topology" / "thread_siblings_list").read_text())
            node = _node(entry)
        except (OSError, ValueError):
            continue
        cpu = int(m.group(1))
        cpus.append(CpuInfo(cpu, min(siblings | {cpu}), node))
    return CpuTopology(tuple(sorted(cpus)))
