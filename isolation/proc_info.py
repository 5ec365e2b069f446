"""What /proc says about one process: its cgroup, one environment variable, and whether it
was given an NVIDIA device (the v1 device cgroup, or the device nodes in its own /dev).

Each answer that cannot be had (the process is gone, /proc/<pid>/environ is not readable,
the host keeps no device cgroup) is None, never a guess.

On cgroup v2 the device controller is an eBPF program attached to the cgroup: it cannot be
read back as a list. What is checked there instead is what the runtime made of it, the
device nodes in the container's own /dev (`/proc/<pid>/root/dev/nvidia<minor>`): the NVIDIA
container runtime creates exactly the nodes of the GPUs it grants, next to the eBPF filter
that allows them. A process in the agent's own mount namespace (not in a container) sees the
host's /dev, so nothing can be told from it: None.
"""

from __future__ import annotations

import os
from pathlib import Path

from isolation.detect import Hierarchy, Mode
from isolation.layout import normalize_cgroup

__all__ = ["NVIDIA_MAJOR", "cgroup_of", "device_cgroup_allows", "device_node_visible", "env_of"]

NVIDIA_MAJOR = 195  # /dev/nvidia<minor>: char devices 195:<minor> (nvidiactl is 195:255)
# The v1 controller whose path names a process's cgroup, in order of preference.
_REFERENCE = ("cpu", "memory", "pids", "cpuacct")


def _cgroup_lines(pid: int, proc_root: str) -> list[tuple[str, list[str], str]] | None:
    try:
        text = Path(proc_root, str(pid), "cgroup").read_text()
    except OSError:
        return None
    out = []
    for line in text.splitlines():
        ident, controllers, path = line.split(":", 2)
        out.append((ident, controllers.split(",") if controllers else [], path))
    return out


def cgroup_of(
    pid: int, hierarchy: Hierarchy, proc_root: str = "/proc", controller: str | None = None
) -> str | None:
    """The process's cgroup relative to the hierarchy root (the unified one on v2, else
    `controller`'s or the first of cpu/memory/pids); None when the process is gone."""
    lines = _cgroup_lines(pid, proc_root)
    if lines is None:
        return None
    if hierarchy.mode is Mode.V2 and controller is None:
        return next((normalize_cgroup(p) for i, _, p in lines if i == "0"), None)
    wanted = (controller,) if controller else _REFERENCE
    for want in wanted:
        for _ident, controllers, path in lines:
            if want in controllers:
                return normalize_cgroup(path)
    return None


def env_of(pid: int, name: str, proc_root: str = "/proc") -> str | None:
    """The value of `name` in the process's environment; None when unset or unreadable."""
    try:
        raw = Path(proc_root, str(pid), "environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def _matches(field: str, number: int) -> bool:
    return field == "*" or field == str(number)


def device_cgroup_allows(
    pid: int, hierarchy: Hierarchy, minor: int, proc_root: str = "/proc"
) -> bool | None:
    """v1: whether the process's `devices.list` lets it open /dev/nvidia<minor>; None
    where there is no v1 device controller (v2, or not mounted) or the list is unreadable.
    A cgroup that allows all by default lists only `a *:* rwm`, whatever it denies on top:
    that reads as allowed (runtimes deny all first, then allow each device, which reads
    back exactly)."""
    mount = hierarchy.v1.get("devices")
    if mount is None:
        return None
    path = cgroup_of(pid, hierarchy, proc_root, "devices")
    if path is None:
        return None
    try:
        text = (mount / path / "devices.list").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        kind, numbers, access = [*line.split(), "", "", ""][:3]
        major, _, minor_field = numbers.partition(":")
        ours = kind == "c" and _matches(major, NVIDIA_MAJOR) and _matches(minor_field, minor)
        if (kind == "a" or ours) and ("r" in access or "w" in access):
            return True
    return False


def _mount_ns(pid: str, proc_root: str) -> int | None:
    try:
        return os.stat(Path(proc_root, pid, "ns", "mnt")).st_ino
    except OSError:
        return None


def device_node_visible(pid: int, minor: int, proc_root: str = "/proc") -> bool | None:
    """Whether /dev/nvidia<minor> exists in the process's own /dev; None when it shares the
    agent's mount namespace (the host's /dev tells nothing) or cannot be looked at."""
    theirs, ours = _mount_ns(str(pid), proc_root), _mount_ns("self", proc_root)
    if theirs is None or ours is None or theirs == ours:
        return None
    try:
        return Path(proc_root, str(pid), "root", "dev", f"nvidia{minor}").exists()
    except OSError:
        return None
