"""What the readers return. A value the kernel did not provide is None, never 0."""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CONTAINER_TICK",
    "EVERYTHING",
    "POD_TICK",
    "CgroupSample",
    "CpuUsage",
    "IoStat",
    "MemoryUsage",
    "Pressure",
    "PsiReading",
    "ReadSet",
]


class ReadSet(NamedTuple):
    """Which files a sample reads beyond CPU and memory usage (each costs a file per cgroup;
    see benchmarks/bench_cgroup_read.py). What is not read is None in the sample."""

    throttling: bool = True  # cpu.stat: periods, throttled periods and time
    memory: bool = True  # memory usage (and, with memory_stat, the working set)
    memory_stat: bool = True  # memory.stat: working set, file cache, anon
    io: bool = False  # io.stat / blkio throttle counters, and io.pressure when psi is read
    psi: bool = True  # cpu.pressure (and memory.pressure, unless memory_psi is False)
    memory_psi: bool = True  # memory.pressure too, when psi is read


# A tick reads pods in detail and containers cheaply; everything is for diagnostics.
POD_TICK = ReadSet()
CONTAINER_TICK = ReadSet(throttling=False, memory_stat=False, io=False, psi=False)
EVERYTHING = ReadSet(io=True)


class CpuUsage(NamedTuple):
    """Cumulative CPU time and CFS throttling (nanoseconds, counts)."""

    usage_ns: int | None
    user_ns: int | None = None
    system_ns: int | None = None
    periods: int | None = None
    throttled_periods: int | None = None
    throttled_ns: int | None = None


class MemoryUsage(NamedTuple):
    """Bytes. `working_set` is usage minus inactive file cache (what kubelet evicts on)."""

    usage_bytes: int | None
    working_set_bytes: int | None = None
    inactive_file_bytes: int | None = None
    active_file_bytes: int | None = None
    anon_bytes: int | None = None


class IoStat(NamedTuple):
    """Cumulative bytes and operations, summed over devices."""

    read_bytes: int | None
    write_bytes: int | None = None
    read_ops: int | None = None
    write_ops: int | None = None


class Pressure(NamedTuple):
    """One PSI file: `some`/`full` averages (percent) and totals (microseconds)."""

    some_avg10: float | None
    some_avg60: float | None = None
    some_avg300: float | None = None
    some_total_us: int | None = None
    full_avg10: float | None = None
    full_avg60: float | None = None
    full_avg300: float | None = None
    full_total_us: int | None = None


class PsiReading(NamedTuple):
    """A cgroup's pressure; `memory` only with `ReadSet.memory_psi`, `io` only with the IO
    detail (`ReadSet.io`)."""

    cpu: Pressure | None
    memory: Pressure | None = None
    io: Pressure | None = None


class CgroupSample(NamedTuple):
    cgroup: str
    cpu: CpuUsage
    memory: MemoryUsage
    io: IoStat | None = None
    psi: PsiReading | None = None
