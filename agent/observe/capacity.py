"""The node's capacity as kubelet sees it, on a bare host: what kubepods may use.

kubelet with `--enforce-node-allocatable=pods` writes the node's capacity less kube-reserved
and system-reserved on kubepods itself: memory.max (v1 memory.limit_in_bytes) and, where it
caps CPU, cpu.max (v1 cfs_quota_us). Those limits are what pods can have, so the brain plans
with them when they are set, and with the host's totals only when they are not; the host's
total less a limit is what kubelet keeps outside it for node daemons (the set-aside, which
the brain does not count twice). A figure given in the settings (--node-cpu, --node-memory)
wins over all and has nothing set aside. On Kubernetes the Node's `status.allocatable`
(`agent.sources.node_info`) comes before kubepods' limits. Each figure carries its source,
which the budget reasons show.
"""

from __future__ import annotations

from typing import NamedTuple

import psutil

from isolation.cgroups import Cgroups
from isolation.errors import CgroupGoneError, UnsupportedKnobError, WriteError
from isolation.knobs import CpuMax
from isolation.layout import KubeletLayout
from qos.state import NodeCapacity

__all__ = ["CONFIGURED", "HOST", "KubepodsLimits", "kubepods_limits", "node_capacity"]

CONFIGURED = "configured"
HOST = "host total"


class KubepodsLimits(NamedTuple):
    """kubepods' own limits; None where it has none (or they cannot be read)."""

    cpu_milli: int | None
    memory_bytes: int | None


class _Figure(NamedTuple):
    """One resource's capacity, where it came from, and what kubelet keeps outside it."""

    amount: int
    source: str
    set_aside: int


def _read(cgroups: Cgroups, knob: str, cgroup: str) -> object:
    try:
        return cgroups.read(knob, cgroup).value
    except (CgroupGoneError, UnsupportedKnobError, WriteError):
        return None


def kubepods_limits(cgroups: Cgroups, layout: KubeletLayout) -> KubepodsLimits:
    kubepods = layout.kubepods()
    cpu = _read(cgroups, "cpu.max", kubepods)
    cores = cpu.cores if isinstance(cpu, CpuMax) else None
    memory = _read(cgroups, "memory.max", kubepods)
    return KubepodsLimits(
        None if cores is None else int(cores * 1000),
        memory if isinstance(memory, int) else None,
    )


def node_capacity(
    cgroups: Cgroups,
    layout: KubeletLayout,
    *,
    allocatable: NodeCapacity | None = None,
    cpu_milli: int | None = None,
    memory_bytes: int | None = None,
) -> NodeCapacity:
    """Per resource: configured, else the Node's allocatable (Kubernetes), else kubepods'
    own limit (never above the host), else the host's total; each with what kubelet keeps
    outside it (none for a configured figure or the host's total)."""
    if allocatable is not None:
        return NodeCapacity(
            cpu_milli=allocatable.cpu_milli if cpu_milli is None else cpu_milli,
            memory_bytes=allocatable.memory_bytes if memory_bytes is None else memory_bytes,
            gpus=allocatable.gpus,
            cpu_source=allocatable.cpu_source if cpu_milli is None else CONFIGURED,
            memory_source=allocatable.memory_source if memory_bytes is None else CONFIGURED,
            cpu_set_aside_milli=allocatable.cpu_set_aside_milli if cpu_milli is None else 0,
            memory_set_aside_bytes=(
                allocatable.memory_set_aside_bytes if memory_bytes is None else 0
            ),
        )
    host_cpu = (psutil.cpu_count(logical=True) or 1) * 1000
    host_memory = psutil.virtual_memory().total
    limits = kubepods_limits(cgroups, layout)
    kubepods = layout.kubepods()

    def pick(configured: int | None, limit: int | None, host: int, file: str) -> _Figure:
        if configured is not None:
            return _Figure(configured, CONFIGURED, 0)
        if limit is not None and limit < host:
            return _Figure(limit, f"kubepods {file} of /{kubepods}", host - limit)
        return _Figure(host, HOST, 0)

    cpu = pick(cpu_milli, limits.cpu_milli, host_cpu, "cpu.max")
    memory = pick(memory_bytes, limits.memory_bytes, host_memory, "memory.max")
    return NodeCapacity(
        cpu_milli=cpu.amount,
        memory_bytes=memory.amount,
        cpu_source=cpu.source,
        memory_source=memory.source,
        cpu_set_aside_milli=cpu.set_aside,
        memory_set_aside_bytes=memory.set_aside,
    )
