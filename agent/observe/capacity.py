"""The node's capacity as kubelet sees it, on a bare host: what kubepods may use.

kubelet with `--enforce-node-allocatable=pods` writes the node's allocatable (capacity less
kube-reserved, system-reserved and the eviction threshold) on kubepods itself: memory.max
(v1 memory.limit_in_bytes) and, where it caps CPU, cpu.max (v1 cfs_quota_us). Those limits
are what pods can have, so the brain plans with them when they are set, and with the host's
totals only when they are not. A figure given in the settings (--node-cpu, --node-memory)
wins over all. On Kubernetes the Node's `status.allocatable` (`agent.sources.node_info`)
comes before kubepods' limits. Each figure carries its source, which the budget reasons show.
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
    own limit (never above the host), else the host's total."""
    if allocatable is not None:
        return NodeCapacity(
            cpu_milli=allocatable.cpu_milli if cpu_milli is None else cpu_milli,
            memory_bytes=allocatable.memory_bytes if memory_bytes is None else memory_bytes,
            gpus=allocatable.gpus,
            cpu_source=allocatable.cpu_source if cpu_milli is None else CONFIGURED,
            memory_source=allocatable.memory_source if memory_bytes is None else CONFIGURED,
        )
    host_cpu = (psutil.cpu_count(logical=True) or 1) * 1000
    host_memory = psutil.virtual_memory().total
    limits = kubepods_limits(cgroups, layout)
    kubepods = layout.kubepods()

    def pick(configured: int | None, limit: int | None, host: int, file: str) -> tuple[int, str]:
        if configured is not None:
            return configured, CONFIGURED
        if limit is not None and limit < host:
            return limit, f"kubepods {file} of /{kubepods}"
        return host, HOST

    cpu, cpu_source = pick(cpu_milli, limits.cpu_milli, host_cpu, "cpu.max")
    memory, memory_source = pick(memory_bytes, limits.memory_bytes, host_memory, "memory.max")
    return NodeCapacity(
        cpu_milli=cpu, memory_bytes=memory, cpu_source=cpu_source, memory_source=memory_source
    )
