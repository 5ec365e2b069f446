"""Errors raised by uplink shaping (`isolation.network`), a branch of the isolation error
tree. Each prints as one line: "<action> <target>: <reason>".

IsolationError                    isolation.errors
 └── NetworkError
      ├── ShapingSpecError        the desired state is inconsistent (also a ValueError);
      │                           nothing touched
      ├── LinkNotFoundError       a device or network namespace is missing; nothing touched
      ├── ForeignStateError       a qdisc, device or nftables table colocd did not create
      │                           is in the way;
      │                           nothing touched
      ├── NetlinkOperationError   the kernel refused one change; see `.reverted`
      └── NftablesError           libnftables is missing or refused a command (the whole
                                  batch is one transaction: nothing of it applied)
"""

from __future__ import annotations

from isolation.errors import IsolationError


class NetworkError(IsolationError):
    """Root of every error uplink shaping raises."""


class ShapingSpecError(NetworkError, ValueError):
    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"validate shaping {target}: {reason}")
        self.target = target
        self.reason = reason


class LinkNotFoundError(NetworkError):
    """`target` is "link up0", "link up0 in netns X" or "netns X"."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"find {target}: {reason}")
        self.target = target
        self.reason = reason


class ForeignStateError(NetworkError):
    """A device carries something colocd did not create and will not replace: a root or
    ingress qdisc, filters, or a device of another kind under the ifb's name."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"shape {device}: {reason}")
        self.device = device
        self.reason = reason


class NetlinkOperationError(NetworkError):
    """The kernel refused `action` on `target`. `reverted` is set once colocd has removed its
    half-built shaping (it does, so that no online pod is left in a wrong class)."""

    def __init__(self, action: str, target: str, device: str, errno: int, reason: str) -> None:
        super().__init__(action, target, device, errno, reason)
        self.action = action
        self.target = target
        self.device = device
        self.errno = errno
        self.reason = reason
        self.reverted = False

    def __str__(self) -> str:
        undo = "; shaping reverted" if self.reverted else ""
        what = f"{self.action} {self.target} on {self.device}"
        return f"{what}: {self.reason} (errno {self.errno}){undo}"


class NftablesError(NetworkError):
    """libnftables refused `action` on `target` (or could not be loaded)."""

    def __init__(self, action: str, target: str, reason: str) -> None:
        super().__init__(f"{action} {target}: {reason}")
        self.action = action
        self.target = target
        self.reason = reason
