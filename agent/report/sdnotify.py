"""systemd's notify protocol (sd_notify(3)): READY=1, WATCHDOG=1, STATUS=..., STOPPING=1.

One datagram per message on the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
abstract name when it starts with "@"). Outside systemd the variable is unset and every
call is a no-op that returns False. The socket comes from the settings (agent/config.py
reads the environment), never from os.environ here.

A message that cannot be sent is logged and reported as False, as sd_notify(3) returns an
error without stopping its caller: a daemon must not die because its supervisor's socket
went away (if the pings really stop, the watchdog restarts it anyway).

With `WatchdogSec=` in the unit, systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID): the
agent must send WATCHDOG=1 more often than that, and `watchdog_interval_s` says how often
(half the timeout, as sd_watchdog_enabled(3) advises).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from agent.errors import NotifyError

log = logging.getLogger(__name__)

READY = "READY=1"
WATCHDOG = "WATCHDOG=1"
STOPPING = "STOPPING=1"
RELOADING = "RELOADING=1"


def _address(notify_socket: str) -> str:
    # "@name" is Linux's abstract namespace: a leading NUL byte on the wire.
    return "\0" + notify_socket[1:] if notify_socket.startswith("@") else notify_socket


class SdNotifier:
    """Sends notify messages to systemd; disabled (every send is a no-op) without a socket."""

    def __init__(self, notify_socket: str | None) -> None:
        if notify_socket is not None and not notify_socket.startswith(("/", "@")):
            raise NotifyError(
                f"use notify socket {notify_socket!r}: not an absolute path or @abstract name"
            )
        self.notify_socket = notify_socket or None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SdNotifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.notify_socket is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when disabled or not delivered."""
        if self.notify_socket is None:
            return False
        for line in assignments:
            if "=" not in line or "\n" in line:
                raise NotifyError(f"notify systemd: {line!r} is not one KEY=value line")
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(_address(self.notify_socket))
                sock.sendall(message)
        except OSError as err:
            log.warning("notify systemd at %s: %s", self.notify_socket, err.strerror or err)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY, *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG)

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify(STOPPING)


def watchdog_interval_s(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """How often to send WATCHDOG=1 (half of $WATCHDOG_USEC); None when not asked for.

    $WATCHDOG_PID, when set, names the process systemd watches: any other process (a child
    that inherited the environment) must not ping.
    """
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    watched = environ.get("WATCHDOG_PID")
    if watched and int(watched) != (os.getpid() if pid is None else pid):
        return None
    try:
        timeout_us = int(usec)
    except ValueError as err:
        raise NotifyError(f"read WATCHDOG_USEC {usec!r}: not an integer") from err
    if timeout_us <= 0:
        raise NotifyError(f"read WATCHDOG_USEC {usec!r}: not positive")
    return timeout_us / 2 / 1e6
