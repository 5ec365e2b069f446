"""Typed readings the brain decides from, one NamedTuple per source.

The tick loop fills these from the cgroup/PSI/NVML readers; `colocd simulate` fills them from
a trace. Every reading carries `at`, the loop's monotonic clock in seconds when it was taken,
so the brain can tell a fresh reading from a stale one. A value that could not be read is
`None`, never 0: 0 would claim that online uses nothing and hand its capacity to batch.

Units: CPU in millicores (1000 = one core), memory in bytes, GPU in hundredths of one GPU,
pressure in percent (0-100, as in /proc/pressure), ratios as fractions (0-1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from qos.cpus import NO_TOPOLOGY, CpuTopology, KubeletCpus
from qos.state import NodeState


class CpuReading(NamedTuple):
    """CPU used per tier, averaged over the sampling interval that ends at `at`."""

    at: float
    node_used_milli: float | None = None
    system_used_milli: float | None = None
    # The online tier only: dedicated pods are counted by their (exclusive, whole) cores.
    online_used_milli: float | None = None
    batch_used_milli: float | None = None


class MemoryReading(NamedTuple):
    """Memory per tier. The node, system and batch figures are working sets (usage minus
    inactive file cache, what kubelet evicts on); online's is its whole usage, page cache
    included, inactive or not: the cache an online service reads from is part of what it
    needs, and only counting it keeps batch from being offered, and limited to, room that
    it would take by evicting that cache (measured here: online's p99 rose ~9x)."""

    at: float
    node_working_set_bytes: float | None = None
    system_working_set_bytes: float | None = None
    # Online and dedicated pods together: memory has no exclusive partition.
    online_memory_bytes: float | None = None
    batch_working_set_bytes: float | None = None


class PressureReading(NamedTuple):
    """Pressure stall information of one cgroup or the node (`cpu.pressure` and friends)."""

    at: float
    some_avg10: float | None = None
    full_avg10: float | None = None


class ThrottleReading(NamedTuple):
    """CFS throttling of the online tier over the last interval: throttled/elapsed periods."""

    at: float
    throttled_ratio: float | None = None


class LatencyReading(NamedTuple):
    """A latency the user exports for online work (e.g. p99 seconds), in any fixed unit."""

    at: float
    value: float | None = None


class GpuReading(NamedTuple):
    """GPUs on the node, summed over devices; utilisation in hundredths of one GPU."""

    at: float
    devices: int | None = None
    online_used_hundredths: float | None = None
    batch_used_hundredths: float | None = None
    online_memory_bytes: float | None = None
    memory_total_bytes: float | None = None
    # Per device, where the agent reads each GPU (the sums above then are theirs).
    per_device: tuple[GpuDeviceReading, ...] = ()


class GpuDeviceReading(NamedTuple):
    """One GPU: utilisation in percent of the device (SM time, 0-100), memory in bytes.
    Online counts every process that is not batch (online, dedicated, system, and any
    process no pod claims): what is protected. `batch_pods` are the batch pods with a
    process on this GPU and their GPU memory here (None: not reported). A device NVML
    could not read has `error` and no values."""

    at: float
    index: int
    uuid: str | None = None
    online_percent: float | None = None
    batch_percent: float | None = None
    online_memory_bytes: float | None = None
    batch_memory_bytes: float | None = None
    memory_total_bytes: float | None = None
    batch_pods: tuple[tuple[str, float | None], ...] = ()
    error: str | None = None


class BatchDemand(NamedTuple):
    """What batch would use if nothing held it back (e.g. Σ batch-* requests of its pods)."""

    at: float
    cpu_milli: float | None = None
    memory_bytes: float | None = None


class BlockDevice(NamedTuple):
    """One of the node's block devices (/sys/block): its name, `MAJOR:MINOR`, and whether
    it is a disk (loop, ram and zram devices are not)."""

    name: str
    device: str
    disk: bool


class Snapshot(NamedTuple):
    """Everything one decision sees. `cpus` are the ids of the node's online CPUs."""

    node: NodeState
    cpus: tuple[int, ...] = ()
    cpu: CpuReading | None = None
    memory: MemoryReading | None = None
    cpu_pressure: PressureReading | None = None
    memory_pressure: PressureReading | None = None
    throttling: ThrottleReading | None = None
    latency: LatencyReading | None = None
    gpu: GpuReading | None = None
    batch_demand: BatchDemand | None = None
    # Each CPU's physical core and NUMA node (unknown: every CPU its own core).
    topology: CpuTopology = NO_TOPOLOGY
    # kubelet's CPU manager state; None where there is none (no file, or not read).
    kubelet_cpus: KubeletCpus | None = None
    block_devices: tuple[BlockDevice, ...] = ()


# A reading more than this many times its bound (e.g. what the node has) is a fault, not a
# measurement: taken at face value it would make the brain hand online the whole node and
# squeeze batch to nothing on no real evidence.
ABSURD_FACTOR = 2.0


def clean(value: float | None, upper: float | None = None) -> float | None:
    """A reading fit to compute with: NaN, ±inf, negatives, non-numbers and absurd values
    (above ABSURD_FACTOR x `upper`) become None (missing); values a little above `upper`
    (counters sampled a moment apart) are cut to it."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    if not math.isfinite(v) or v < 0:
        return None
    if upper is None:
        return v
    return None if v > ABSURD_FACTOR * upper else min(v, upper)


def reading_time(at: float) -> float | None:
    """The reading's timestamp, or None when it is not a finite number (treated as missing)."""
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        return None
    return float(at)
