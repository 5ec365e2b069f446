"""Turning a relative cgroup path into a checked directory (shared by both backends)."""

from __future__ import annotations

import os
from pathlib import Path

from isolation.errors import UnsafeNameError
from isolation.layout import normalize_cgroup


def inside(mount: Path, cgroup: str) -> Path:
    """`mount/cgroup`, refused unless it still lies inside `mount` once resolved."""
    rel = normalize_cgroup(cgroup)
    path = mount / rel if rel else mount
    real_mount = os.path.realpath(mount)
    real = os.path.realpath(path)
    if real != real_mount and not real.startswith(real_mount + os.sep):
        raise UnsafeNameError("cgroup path", cgroup, f"resolves to {real}, outside {real_mount}")
    return path
