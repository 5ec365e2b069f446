"""PSI poll triggers: sleep in poll() until a cgroup's CPU stall crosses a threshold.

Writing `some <stall_us> <window_us>` to an open `cpu.pressure` file arms a trigger; poll()
then reports POLLPRI when the cgroup's tasks stalled for more than `stall_us` within any
`window_us`. The kernel checks triggers every tenth of a window or so with CAP_SYS_RESOURCE;
without it, it accepts windows that are whole multiples of 2 s only and checks them with its
2-s averages, which is too slow to react with. Hybrid hosts hold per-cgroup PSI in the
cgroup2 mount; pure v1 has none (`Cgroups.pressure_file` is None).

A trigger the kernel refuses with EINVAL/EPERM/EACCES turns the whole facility off for the
process (`refused` says why); a cgroup without a pressure file is simply not watched; a
cgroup that is removed reports POLLERR and its trigger is dropped.
"""

from __future__ import annotations

import errno
import os
import select

from isolation.cgroups import Cgroups
from isolation.errors import GONE_ERRNOS

__all__ = ["PressureTriggers"]

_REFUSED = (errno.EINVAL, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP)


class PressureTriggers:
    def __init__(self, cgroups: Cgroups, stall_s: float, window_s: float) -> None:
        self._cgroups = cgroups
        self.spec = f"some {round(stall_s * 1e6)} {round(window_s * 1e6)}"
        self._fds: dict[str, int] = {}  # cgroup -> armed descriptor
        self._by_fd: dict[int, str] = {}
        self._poll = select.poll()
        self.refused: str | None = None

    @property
    def armed(self) -> int:
        return len(self._fds)

    def watch(self, cgroups: list[str]) -> None:
        """Arm a trigger on each of `cgroups` not yet armed; drop the others'."""
        wanted = set(cgroups)
        for cgroup in [c for c in self._fds if c not in wanted]:
            self._drop(cgroup)
        if self.refused is not None:
            return
        for cgroup in cgroups:
            if cgroup not in self._fds and not self._arm(cgroup):
                return

    def _arm(self, cgroup: str) -> bool:
        """False once the kernel refused the trigger (nothing more is tried)."""
        path = self._cgroups.pressure_file(cgroup)
        if path is None:
            self.refused = "this host keeps no per-cgroup PSI (cgroup v1 without cgroup2)"
            return False
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            if err.errno in GONE_ERRNOS:
                return True
            self.refused = f"open {path}: {err.strerror}"
            return False
        try:
            os.write(fd, self.spec.encode())
        except OSError as err:
            os.close(fd)
            if err.errno in GONE_ERRNOS:
                return True
            if err.errno in _REFUSED:
                self.refused = (
                    f"write trigger {self.spec!r} to {path}: {err.strerror} (windows must be "
                    "multiples of 2 s without CAP_SYS_RESOURCE)"
                )
                return False
            raise
        self._fds[cgroup] = fd
        self._by_fd[fd] = cgroup
        self._poll.register(fd, select.POLLPRI)
        return True

    def _drop(self, cgroup: str) -> None:
        fd = self._fds.pop(cgroup)
        self._by_fd.pop(fd, None)
        self._poll.unregister(fd)
        os.close(fd)

    def wait(self, timeout_s: float) -> list[str]:
        """Block up to `timeout_s` for a trigger; the cgroups whose trigger fired."""
        if not self._fds:
            return []
        fired = []
        for fd, events in self._poll.poll(max(0, round(timeout_s * 1000))):
            cgroup = self._by_fd.get(fd)
            if cgroup is None:
                continue
            if events & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                self._drop(cgroup)  # the cgroup is gone
            elif events & select.POLLPRI:
                fired.append(cgroup)
        return fired

    def close(self) -> None:
        for cgroup in list(self._fds):
            self._drop(cgroup)
