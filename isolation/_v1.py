"""cgroup v1 (and hybrid) backend: one mount per controller, PSI from the cgroup2 mount.

Files read per cgroup: `cpuacct.usage`, `cpu.stat` (throttling), `memory.usage_in_bytes`,
`memory.stat` (hierarchical `total_*` keys), `blkio.throttle.io_service*_recursive`, and on
hybrid hosts `<unified>/<cgroup>/{cpu,memory,io}.pressure` when that directory exists.
"""

from __future__ import annotations

from pathlib import Path

from isolation._fds import FdCache, key_int, pressure, single_int
from isolation._paths import inside
from isolation.detect import Hierarchy
from isolation.knobs import Binding
from isolation.readings import CgroupSample, CpuUsage, IoStat, MemoryUsage, PsiReading


class Backend:
    version = 1

    def __init__(self, hierarchy: Hierarchy) -> None:
        self._mounts = dict(hierarchy.v1)
        self._unified = hierarchy.unified
        self._files: dict[str, tuple[str, ...]] = {}

    def dir(self, controller: str, cgroup: str) -> Path:
        return inside(self._mounts[controller], cgroup)

    def dirs(self, cgroup: str) -> dict[str, Path]:
        return {c: inside(m, cgroup) for c, m in sorted(self._mounts.items())}

    def exists(self, cgroup: str) -> bool:
        mount = self._mounts.get("cpu") or next(iter(self._mounts.values()))
        return inside(mount, cgroup).is_dir()

    def host_unsupported(self, binding: Binding) -> str | None:
        if binding.controller not in self._mounts:
            return f"the {binding.controller} controller is not mounted"
        return None

    def _paths(self, cgroup: str) -> tuple[str, ...]:
        paths = self._files.get(cgroup)
        if paths is None:
            m = self._mounts
            acct = str(inside(m["cpuacct"], cgroup)) if "cpuacct" in m else None
            cpu = str(inside(m["cpu"], cgroup)) if "cpu" in m else None
            mem = str(inside(m["memory"], cgroup)) if "memory" in m else None
            blk = str(inside(m["blkio"], cgroup)) if "blkio" in m else None
            psi = str(inside(self._unified, cgroup)) if self._unified else None
            paths = (
                f"{acct}/cpuacct.usage" if acct else "",
                f"{cpu}/cpu.stat" if cpu else "",
                f"{mem}/memory.usage_in_bytes" if mem else "",
                f"{mem}/memory.stat" if mem else "",
                f"{blk}/blkio.throttle.io_service_bytes_recursive" if blk else "",
                f"{blk}/blkio.throttle.io_serviced_recursive" if blk else "",
                f"{psi}/cpu.pressure" if psi else "",
                f"{psi}/memory.pressure" if psi else "",
                f"{psi}/io.pressure" if psi else "",
            )
            self._files[cgroup] = paths
        return paths

    def directories(self, cgroup: str) -> set[str]:
        return {p.rsplit("/", 1)[0] for p in self._paths(cgroup) if p}

    def sample(
        self, fds: FdCache, cgroup: str, *, memory_stat: bool, io: bool, psi: bool
    ) -> CgroupSample | None:
        p = self._paths(cgroup)
        read = fds.read
        usage = single_int(read(p[0])) if p[0] else None
        cpu_stat = read(p[1]) if p[1] else None
        mem_usage = single_int(read(p[2])) if p[2] else None
        if usage is None and cpu_stat is None and mem_usage is None:
            return None  # the cgroup is gone (or was never there)
        throttled = key_int(cpu_stat, b"throttled_time")
        cpu = CpuUsage(
            usage,
            None,
            None,
            key_int(cpu_stat, b"nr_periods"),
            key_int(cpu_stat, b"nr_throttled"),
            throttled,
        )
        memory = MemoryUsage(mem_usage)
        if memory_stat and p[3]:
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
        io_stat = _io(read(p[4]), read(p[5])) if io and p[4] else None
        pressure_ = None
        if psi and p[6]:
            pressure_ = PsiReading(pressure(read(p[6])), pressure(read(p[7])), pressure(read(p[8])))
        return CgroupSample(cgroup, cpu, memory, io_stat, pressure_)


def _total(buf: bytes | None, op: bytes) -> int | None:
    """Sum of `MAJ:MIN <op> N` lines (the per-device lines, not the `Total` line)."""
    if buf is None:
        return None
    total = 0
    for line in buf.split(b"\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] == op:
            total += int(parts[2])
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
