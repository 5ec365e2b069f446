"""Turning a relative cgroup path into a checked directory (shared by both backends)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from isolation.errors import UnsafeNameError
from isolation.layout import normalize_cgroup

# Forget every checked path past this many (a node sees pods come and go for months).
MAX_REMEMBERED = 50_000


class Root:
    """One hierarchy's mount point. `dir(cgroup)` joins and resolves, and refuses anything
    that lands outside the mount. cgroupfs cannot hold symlinks, so a path checked once stays
    inside; the check is remembered to keep the 1-s tick cheap."""

    def __init__(self, mount: Path) -> None:
        self.mount = str(mount)
        self._real = os.path.realpath(mount)
        self._dirs: dict[str, str] = {}

    def dir(self, cgroup: str) -> str:
        known = self._dirs.get(cgroup)
        if known is not None:
            return known
        rel = normalize_cgroup(cgroup)
        path = os.path.join(self.mount, rel) if rel else self.mount
        real = os.path.realpath(path)
        if real != self._real and not real.startswith(self._real + os.sep):
            raise UnsafeNameError(
                "cgroup path", cgroup, f"resolves to {real}, outside {self._real}"
            )
        if len(self._dirs) >= MAX_REMEMBERED:
            self._dirs.clear()
        self._dirs[cgroup] = path
        return path

    def retain(self, cgroups: Iterable[str]) -> None:
        keep = set(cgroups)
        self._dirs = {c: d for c, d in self._dirs.items() if c in keep}
