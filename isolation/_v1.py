"""cgroup v1 (and hybrid) backend: one mount per controller, PSI from the cgroup2 mount.

Files read per cgroup: `cpuacct.usage`, `cpu.stat` (throttling), `memory.usage_in_bytes`,
`memory.stat` (hierarchical `total_*` keys), `blkio.throttle.io_service*_recursive`, and on
hybrid hosts `<unified>/<cgroup>/{cpu,memory,io}.pressure` when that directory exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from isolation._fds import FdCache, count, key_int, pressure, single_int
from isolation._paths import MAX_REMEMBERED, Root
from isolation.detect import Hierarchy
from isolation.knobs import Binding
from isolation.readings import (
    CgroupSample,
    CpuUsage,
    IoStat,
    MemoryUsage,
    PsiReading,
    ReadSet,
)


class Backend:
    version = 1

    def __init__(self, hierarchy: Hierarchy) -> None:
        self._roots = {c: Root(m) for c, m in sorted(hierarchy.v1.items())}
        self._unified = Root(hierarchy.unified) if hierarchy.unified else None
        self._exists_in = self._roots.get("cpu") or next(iter(self._roots.values()))
        self._files: dict[str, tuple[str, ...]] = {}

    def dir(self, controller: str, cgroup: str) -> str:
        return self._roots[controller].dir(cgroup)

    def usage_dir(self, cgroup: str) -> str:
        """Where CPU use is read: the cpuacct hierarchy."""
        return (self._roots.get("cpuacct") or self._exists_in).dir(cgroup)

    def dirs(self, cgroup: str) -> dict[str, Path]:
        return {c: Path(r.dir(cgroup)) for c, r in self._roots.items()}

    def pressure_dir(self, cgroup: str) -> str | None:
        """Hybrid hosts keep per-cgroup PSI in the cgroup2 mount; pure v1 has none."""
        return self._unified.dir(cgroup) if self._unified is not None else None

    def exists(self, cgroup: str) -> bool:
        return os.path.isdir(self._exists_in.dir(cgroup))

    def host_unsupported(self, binding: Binding) -> str | None:
        if binding.controller not in self._roots:
            return f"the {binding.controller} controller is not mounted"
        return None

    def _paths(self, cgroup: str) -> tuple[str, ...]:
        def at(root: Root | None, name: str) -> str:
            return f"{root.dir(cgroup)}/{name}" if root is not None else ""

        r = self._roots.get
        paths = (
            at(r("cpuacct"), "cpuacct.usage"),
            at(r("cpu"), "cpu.stat"),
            at(r("memory"), "memory.usage_in_bytes"),
            at(r("memory"), "memory.stat"),
            at(r("blkio"), "blkio.throttle.io_service_bytes_recursive"),
            at(r("blkio"), "blkio.throttle.io_serviced_recursive"),
            at(self._unified, "cpu.pressure"),
            at(self._unified, "memory.pressure"),
            at(self._unified, "io.pressure"),
        )
        if len(self._files) >= MAX_REMEMBERED:
            self._files.clear()
        self._files[cgroup] = paths
        return paths

    def retain(self, cgroups: list[str]) -> set[str]:
        """Forget what is known of other cgroups; returns the directories still in use."""
        keep = set(cgroups)
        self._files = {c: p for c, p in self._files.items() if c in keep}
        for root in (*self._roots.values(), self._unified):
            if root is not None:
                root.retain(keep)
        return {p.rsplit("/", 1)[0] for paths in self._files.values() for p in paths if p}

    def sample(self, fds: FdCache, cgroup: str, what: ReadSet) -> CgroupSample | None:
        p = self._files.get(cgroup) or self._paths(cgroup)
        read = fds.read
        usage = read(p[0]) if p[0] else None
        mem = read(p[2]) if p[2] and what.memory else None
        if usage is None and mem is None:
            return None  # the cgroup is gone (or was never there)
        mem_usage = single_int(mem)
        cpu_usage = single_int(usage)
        if what.throttling and p[1]:
            stat = read(p[1])
            cpu = CpuUsage(
                cpu_usage,
                None,
                None,
                key_int(stat, b"nr_periods"),
                key_int(stat, b"nr_throttled"),
                key_int(stat, b"throttled_time"),
            )
        else:
            cpu = CpuUsage(cpu_usage)
        if what.memory and what.memory_stat and p[3]:
            stat = read(p[3])
            inactive = key_int(stat, b"total_inactive_file")
            working = None
            if mem_usage is not None and inactive is not None:
                working = max(0, mem_usage - inactive)
            memory = MemoryUsage(
                mem_usage,
                working,
                inactive,
                key_int(stat, b"total_active_file"),
                key_int(stat, b"total_rss"),
            )
        else:
            memory = MemoryUsage(mem_usage)
        io_stat = _io(read(p[4]), read(p[5])) if what.io and p[4] else None
        psi = None
        if what.psi and p[6]:
            io_psi = pressure(read(p[8])) if what.io else None
            mem_psi = pressure(read(p[7])) if what.memory_psi else None
            psi = PsiReading(pressure(read(p[6])), mem_psi, io_psi)
        return CgroupSample(cgroup, cpu, memory, io_stat, psi)


def _total(buf: bytes | None, op: bytes) -> int | None:
    """Sum of `MAJ:MIN <op> N` lines (the per-device lines, not the `Total` line)."""
    if buf is None:
        return None
    total = 0
    for line in buf.split(b"\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] == op:
            n = count(parts[2])
            if n is None:
                return None  # malformed: not a total at all
            total += n
    return total


def _io(service_bytes: bytes | None, serviced: bytes | None) -> IoStat | None:
    if service_bytes is None and serviced is None:
        return None
    return IoStat(
        _total(service_bytes, b"Read"),
        _total(service_bytes, b"Write"),
        _total(serviced, b"Read"),
        _total(serviced, b"Write"),
    )
