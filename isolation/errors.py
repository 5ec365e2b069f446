"""Errors raised by `isolation/`. Each prints as one line: "<action> <target>: <reason>".

IsolationError
 ├── DetectionError      the cgroup hierarchy or the kubelet layout was not found
 │                       (the message says what was looked for, and where)
 ├── UnsafeNameError     a pod UID, container ID or cgroup path outside its grammar,
 │                       or a path that resolves outside the cgroup root
 ├── KnobError           a knob name not in the table, or a value its validator refuses
 │    └── UnsupportedKnobError  the knob has no file on this host (version, controller)
 ├── CgroupGoneError     the cgroup vanished (ENOENT/ENODEV): a normal event, counted
 ├── WriteError          the kernel refused a write (EINVAL, EBUSY, EACCES, ...):
 │                       carries the file, the value and the errno
 ├── JournalError        the journal under the state dir cannot be read or written
 ├── OwnerError          another colocd holds this node (state dir lock or tree marker)
 ├── NetworkError        uplink shaping (isolation._net_errors: spec, missing link,
 │                       foreign qdisc in the way, kernel refusal)
 └── GpuError            GPU readings (isolation._gpu_errors: an NVML call failed,
                         a GPU was lost)
"""

from __future__ import annotations

import errno

# A file under a cgroup that was removed: gone from the path (ENOENT, ENOTDIR) or, through a
# file opened before the rmdir, ENODEV. Not an error: pods come and go.
GONE_ERRNOS = (errno.ENOENT, errno.ENODEV, errno.ENOTDIR)


class IsolationError(Exception):
    """Root of every error `isolation/` raises."""


class DetectionError(IsolationError):
    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"detect {what}: {reason}")
        self.what = what
        self.reason = reason


class UnsafeNameError(IsolationError):
    def __init__(self, kind: str, value: str, reason: str) -> None:
        super().__init__(f"use {kind} {value!r}: {reason}")
        self.kind = kind
        self.value = value
        self.reason = reason


class KnobError(IsolationError):
    def __init__(self, knob: str, reason: str) -> None:
        super().__init__(f"set {knob}: {reason}")
        self.knob = knob
        self.reason = reason


class UnsupportedKnobError(KnobError):
    pass


class CgroupGoneError(IsolationError):
    def __init__(self, path: str) -> None:
        super().__init__(f"access {path}: cgroup no longer exists")
        self.path = path


class WriteError(IsolationError):
    def __init__(self, path: str, value: str, errno: int | None, reason: str) -> None:
        super().__init__(f"write {value!r} to {path}: {reason}")
        self.path = path
        self.value = value
        self.errno = errno
        self.reason = reason


class OwnerError(IsolationError):
    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"own {target}: {reason}")
        self.target = target
        self.reason = reason


class JournalError(IsolationError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"journal {path}: {reason}")
        self.path = path
        self.reason = reason
