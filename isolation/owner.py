"""One agent per node: a second colocd refuses to start, naming the first one's PID.

Two agents on one node would fight: each journals the other's values as "originals", and
the first to stop reverts the tree under the other. Two claims keep the second one out:

- `flock` on `<state dir>/colocd.lock`, which holds the holder's PID: two agents sharing a
  state directory. The kernel drops the lock when the process dies, however it dies.
- a marker on kubelet's tree itself, the extended attribute `user.colocd.owner` on the
  kubepods cgroup (JSON: pid, process start time, state dir): two agents with different
  state directories. A marker whose process is gone (killed, node rebooted) is taken over;
  the start time tells a recycled PID from the owner. Where the file system keeps no
  extended attributes the lock alone guards (and the log says so). An owner in another
  PID namespace (another container) cannot be seen and counts as gone: there the shared
  state dir (a hostPath) and its lock keep the second agent out.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

from isolation.errors import OwnerError

__all__ = ["LOCK_FILE", "MARKER", "NodeLock", "Owner"]

log = logging.getLogger(__name__)

LOCK_FILE = "colocd.lock"
MARKER = "user.colocd.owner"


class Owner(NamedTuple):
    pid: int
    start: str  # the process's start time in clock ticks since boot (/proc/<pid>/stat)
    state_dir: str


def _start_time(proc_root: str, pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat; None when the process does not exist."""
    try:
        stat = Path(proc_root, str(pid), "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


class NodeLock:
    """Held from `acquire()` to `release()`; `cgroup_dir` is the kubepods directory (None:
    the state dir lock only, e.g. for `colocd revert`, which must not run under an agent)."""

    def __init__(self, state_dir: Path, cgroup_dir: Path | None, proc_root: str = "/proc") -> None:
        self.state_dir = Path(state_dir)
        self.cgroup_dir = cgroup_dir
        self.proc_root = proc_root
        self.path = self.state_dir / LOCK_FILE
        self._fd: int | None = None
        self._marked = False

    def acquire(self) -> None:
        self._lock_state_dir()
        if self.cgroup_dir is None:
            return
        try:
            self._mark_tree()
        except OwnerError:
            self.release()
            raise

    def _lock_state_dir(self) -> None:
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise OwnerError(str(self.path), f"cannot open: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise OwnerError(
                    str(self.path), f"another colocd (pid {holder}) runs with this state dir"
                ) from None
            raise OwnerError(str(self.path), f"cannot lock: {err.strerror}") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _owner(self) -> Owner | None:
        assert self.cgroup_dir is not None
        try:
            raw = os.getxattr(self.cgroup_dir, MARKER)
            obj = json.loads(raw)
            return Owner(int(obj["pid"]), str(obj["start"]), str(obj["stateDir"]))
        except OSError:
            return None  # no marker (ENODATA), or no extended attributes here
        except (ValueError, KeyError, TypeError):
            return None  # a damaged marker claims nothing

    def _mark_tree(self) -> None:
        assert self.cgroup_dir is not None
        me = Owner(os.getpid(), _start_time(self.proc_root, os.getpid()) or "", str(self.state_dir))
        other = self._owner()
        if other is not None and other.pid != me.pid:
            if _start_time(self.proc_root, other.pid) == other.start:
                raise OwnerError(
                    str(self.cgroup_dir),
                    f"another colocd (pid {other.pid}, state dir {other.state_dir}) "
                    "enforces this tree",
                )
            log.warning(
                "taking over %s from colocd pid %d, which is gone", self.cgroup_dir, other.pid
            )
        value = json.dumps({"pid": me.pid, "start": me.start, "stateDir": me.state_dir})
        try:
            os.setxattr(self.cgroup_dir, MARKER, value.encode())
        except OSError as err:
            log.warning(
                "cannot mark %s as this agent's (%s): only the state dir lock guards it",
                self.cgroup_dir,
                err.strerror,
            )
            return
        self._marked = True

    def release(self) -> None:
        """Remove the marker (when still ours) and drop the lock."""
        if self._marked and self.cgroup_dir is not None:
            owner = self._owner()
            if owner is not None and owner.pid == os.getpid():
                try:
                    os.removexattr(self.cgroup_dir, MARKER)
                except OSError as err:
                    log.warning("remove the owner mark on %s: %s", self.cgroup_dir, err.strerror)
            self._marked = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
