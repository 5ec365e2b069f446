"""Skip conditions for tests that need the host's real cgroup v1 controllers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")


def cgroup_v1_missing_reason(root: Path = Path("/sys/fs/cgroup")) -> str | None:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    missing = [c for c in V1_CONTROLLERS if not (root / c / "cgroup.procs").exists()]
    if missing:
        return f"needs cgroup v1 controllers {','.join(missing)} mounted under {root}"
    return None


_REASON = cgroup_v1_missing_reason()
requires_cgroup_v1 = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
