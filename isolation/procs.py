"""The processes of a cgroup subtree, and v2's `cgroup.kill`: what evicting a pod on a bare
host needs from the cgroup filesystem (the signals and the grace period are the agent's,
in `agent.act.cgroup_evictor`). Reading only `cgroup.procs`, never moving a process.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from isolation.cgroups import Cgroups
from isolation.errors import GONE_ERRNOS, CgroupGoneError, WriteError

__all__ = ["alive", "kill_subtree", "pids_below"]


def pids_below(cgroups: Cgroups, cgroup: str) -> frozenset[int]:
    """Every process in `cgroup` or any cgroup below it. On v1 the union over every mounted
    controller: a process left in one controller's copy of the pod is still the pod's."""
    pids: set[int] = set()
    for controller in cgroups.dirs(cgroup):
        for below in cgroups.walk(controller, cgroup):
            try:
                text = (cgroups.dir(controller, below) / "cgroup.procs").read_text()
            except OSError as err:
                if err.errno in GONE_ERRNOS:
                    continue  # removed while walking or reading (the pod is going anyway)
                raise
            pids.update(int(p) for p in text.split())
    return frozenset(pids)


def alive(pid: int, proc_root: str = "/proc") -> bool:
    """Not yet exited: a zombie stays in cgroup.procs until its parent reaps it, and no
    signal reaches it any more."""
    try:
        stat = Path(proc_root, str(pid), "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_subtree(cgroups: Cgroups, cgroup: str) -> bool:
    """SIGKILL every process in `cgroup` and below, at once, through v2's `cgroup.kill` (no
    process can fork away meanwhile). False where there is none (v1, or a kernel before 5.14):
    the caller then signals each PID."""
    if cgroups.version != 2:
        return False
    path = Path(cgroups.dir("unified", cgroup)) / "cgroup.kill"
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        if not cgroups.exists(cgroup):
            raise CgroupGoneError(str(path.parent)) from None
        return False
    try:
        os.write(fd, b"1")
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENODEV):
            raise CgroupGoneError(str(path.parent)) from err
        raise WriteError(str(path), "1", err.errno, err.strerror or str(err)) from err
    finally:
        os.close(fd)
    return True
