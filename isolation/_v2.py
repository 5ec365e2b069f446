"""cgroup v2 backend: one tree; a controller's files exist in a cgroup only when the parent
enables it in `cgroup.subtree_control`.

Files read per cgroup: `cpu.stat`, `memory.current`, `memory.stat`, `io.stat` and the
cgroup's own `{cpu,memory,io}.pressure`.
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
    version = 2

    def __init__(self, hierarchy: Hierarchy) -> None:
        assert hierarchy.unified is not None
        self._root = Root(hierarchy.unified)
        self._where = hierarchy.unified
        self._controllers = hierarchy.v2_controllers
        self._files: dict[str, tuple[str, ...]] = {}

    def dir(self, controller: str, cgroup: str) -> str:
        return self._root.dir(cgroup)

    def usage_dir(self, cgroup: str) -> str:
        return self._root.dir(cgroup)

    def dirs(self, cgroup: str) -> dict[str, Path]:
        return {"unified": Path(self._root.dir(cgroup))}

    def pressure_dir(self, cgroup: str) -> str | None:
        return self._root.dir(cgroup)

    def exists(self, cgroup: str) -> bool:
        return os.path.isdir(self._root.dir(cgroup))

    def host_unsupported(self, binding: Binding) -> str | None:
        if binding.controller and binding.controller not in self._controllers:
            return f"the {binding.controller} controller is not available in {self._where}"
        return None

    def _paths(self, cgroup: str) -> tuple[str, ...]:
        d = self._root.dir(cgroup)
        paths = tuple(
            f"{d}/{name}"
            for name in (
                "cpu.stat",
                "memory.current",
                "memory.stat",
                "io.stat",
                "cpu.pressure",
                "memory.pressure",
                "io.pressure",
            )
        )
        if len(self._files) >= MAX_REMEMBERED:
            self._files.clear()
        self._files[cgroup] = paths
        return paths

    def retain(self, cgroups: list[str]) -> set[str]:
        """Forget what is known of other cgroups; returns the directories still in use."""
        keep = set(cgroups)
        self._files = {c: p for c, p in self._files.items() if c in keep}
        self._root.retain(keep)
        return {paths[0].rsplit("/", 1)[0] for paths in self._files.values()}

    def sample(self, fds: FdCache, cgroup: str, what: ReadSet) -> CgroupSample | None:
        # cpu.stat carries usage and throttling together on v2: one file either way.
        p = self._files.get(cgroup) or self._paths(cgroup)
        read = fds.read
        stat = read(p[0])
        current = single_int(read(p[1])) if what.memory else None
        if stat is None and current is None:
            return None

        def usec(key: bytes) -> int | None:
            v = key_int(stat, key)
            return None if v is None else v * 1000

        if what.throttling:
            cpu = CpuUsage(
                usec(b"usage_usec"),
                usec(b"user_usec"),
                usec(b"system_usec"),
                key_int(stat, b"nr_periods"),
                key_int(stat, b"nr_throttled"),
                usec(b"throttled_usec"),
            )
        else:
            cpu = CpuUsage(usec(b"usage_usec"))
        if what.memory and what.memory_stat:
            mstat = read(p[2])
            inactive = key_int(mstat, b"inactive_file")
            working = None
            if current is not None and inactive is not None:
                working = max(0, current - inactive)
            memory = MemoryUsage(
                current, working, inactive, key_int(mstat, b"active_file"), key_int(mstat, b"anon")
            )
        else:
            memory = MemoryUsage(current)
        io_stat = _io(read(p[3])) if what.io else None
        psi = None
        if what.psi:
            io_psi = pressure(read(p[6])) if what.io else None
            mem_psi = pressure(read(p[5])) if what.memory_psi else None
            psi = PsiReading(pressure(read(p[4])), mem_psi, io_psi)
        return CgroupSample(cgroup, cpu, memory, io_stat, psi)


def _io(buf: bytes | None) -> IoStat | None:
    """`MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..` lines, summed."""
    if buf is None:
        return None
    sums: dict[bytes, int | None] = {b"rbytes": 0, b"wbytes": 0, b"rios": 0, b"wios": 0}
    for line in buf.split(b"\n"):
        for pair in line.split()[1:]:
            key, _, value = pair.partition(b"=")
            if key in sums:
                n, before = count(value), sums[key]
                sums[key] = None if n is None or before is None else before + n
    return IoStat(sums[b"rbytes"], sums[b"wbytes"], sums[b"rios"], sums[b"wios"])
