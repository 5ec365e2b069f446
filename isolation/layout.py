"""How kubelet and the container runtimes name cgroups, and the grammar of what goes in a name.

Two kubelet drivers name the same tree differently (QoS class `burstable`, pod UID `1a-2b`):

    cgroupfs  <root>/kubepods/burstable/pod1a-2b/<container>
    systemd   <root>/kubepods.slice/kubepods-burstable.slice/
                  kubepods-burstable-pod1a_2b.slice/<scope>

Guaranteed pods sit directly under `kubepods`. A container's directory depends on the runtime:

    runtime      cgroupfs         systemd
    containerd   <id>             cri-containerd-<id>.scope
    CRI-O        crio-<id>        crio-<id>.scope
    docker       <id>             docker-<id>.scope

`<root>` is kubelet's own `--cgroup-root`: the same relative path under every controller.
Under the systemd driver a root that is a slice (`kube.slice`) prefixes its children's names
(`kube-kubepods.slice`), as systemd's slice nesting does; any other root does not.

Every pod UID and container ID is checked against its grammar before it becomes part of a
path, so a hostile value (`../..`, `a/b`) can never name a directory outside the tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from isolation.errors import UnsafeNameError
from qos.k8s_qos import QOSClass

__all__ = [
    "Driver",
    "KubeletLayout",
    "Runtime",
    "check_container_id",
    "check_pod_uid",
    "join",
    "normalize_cgroup",
]


class Driver(StrEnum):
    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


class Runtime(StrEnum):
    """Container runtimes, named as in `status.containerStatuses[].containerID` (`runtime://`)."""

    CONTAINERD = "containerd"
    CRIO = "cri-o"
    DOCKER = "docker"


# Kubernetes UIDs are RFC 4122 UUIDs; static pods use a 32-digit hex hash.
_POD_UID = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$"
)
# containerd, CRI-O and docker all use 64 hex digits; shorter prefixes appear in tools.
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")
# One component of a cgroup path: what kubelet, systemd and runtimes put there.
_COMPONENT = re.compile(r"^[A-Za-z0-9_:@+][A-Za-z0-9_.:@+-]{0,254}$")

_SCOPE_PREFIX = {
    (Driver.CGROUPFS, Runtime.CONTAINERD): "",
    (Driver.CGROUPFS, Runtime.CRIO): "crio-",
    (Driver.CGROUPFS, Runtime.DOCKER): "",
    (Driver.SYSTEMD, Runtime.CONTAINERD): "cri-containerd-",
    (Driver.SYSTEMD, Runtime.CRIO): "crio-",
    (Driver.SYSTEMD, Runtime.DOCKER): "docker-",
}
_QOS_DIR = {QOSClass.BURSTABLE: "burstable", QOSClass.BEST_EFFORT: "besteffort"}


def check_pod_uid(uid: str) -> str:
    if not _POD_UID.match(uid):
        raise UnsafeNameError("pod UID", uid, "not a UUID or 32 hex digits")
    return uid


def check_container_id(cid: str) -> str:
    if not _CONTAINER_ID.match(cid):
        raise UnsafeNameError("container ID", cid, "not 12 to 64 lowercase hex digits")
    return cid


def normalize_cgroup(path: str) -> str:
    """`path` relative to a hierarchy root, as `a/b/c` (`""` is the root); refuses `.`, `..`,
    empty components and characters no cgroup name here uses."""
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    if "//" in path.strip("/"):
        raise UnsafeNameError("cgroup path", path, "empty path component")
    for part in parts:
        if part in (".", "..") or not _COMPONENT.match(part):
            raise UnsafeNameError("cgroup path", path, f"component {part!r} is not allowed")
    return "/".join(parts)


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class KubeletLayout:
    """Where kubelet puts pods: its driver and its cgroup root (relative, `""` = the top)."""

    driver: Driver
    root: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", normalize_cgroup(self.root))

    def _prefix(self) -> str:
        """systemd: the name prefix a slice root gives its children (`kube.slice` → `kube-`)."""
        last = self.root.rsplit("/", 1)[-1]
        if last.endswith(".slice") and last != "-.slice":
            return last.removesuffix(".slice") + "-"
        return ""

    def _slices(self, *names: str) -> str:
        """systemd: the nested slices for `names` (`kubepods`, `burstable`, ...)."""
        prefix = self._prefix()
        out = []
        for i in range(1, len(names) + 1):
            out.append(prefix + "-".join(names[:i]) + ".slice")
        return join(self.root, *out)

    def kubepods(self) -> str:
        if self.driver is Driver.SYSTEMD:
            return self._slices("kubepods")
        return join(self.root, "kubepods")

    def qos_cgroup(self, qos: QOSClass) -> str:
        """The QoS-level cgroup (Guaranteed pods live directly in kubepods)."""
        level = _QOS_DIR.get(qos)
        if level is None:
            return self.kubepods()
        if self.driver is Driver.SYSTEMD:
            return self._slices("kubepods", level)
        return join(self.kubepods(), level)

    def pod_cgroup(self, qos: QOSClass, uid: str) -> str:
        check_pod_uid(uid)
        if self.driver is Driver.SYSTEMD:
            levels = ["kubepods"] + ([_QOS_DIR[qos]] if qos in _QOS_DIR else [])
            pod = "pod" + uid.replace("-", "_")  # systemd escapes '-' as '_'
            return self._slices(*levels, pod)
        return join(self.qos_cgroup(qos), f"pod{uid}")

    def container_name(self, runtime: Runtime, cid: str) -> str:
        check_container_id(cid)
        name = _SCOPE_PREFIX[(self.driver, runtime)] + cid
        return name + ".scope" if self.driver is Driver.SYSTEMD else name

    def container_candidates(self, runtime: Runtime | None, cid: str) -> tuple[str, ...]:
        """Directory names a container may have: its runtime's, or every runtime's when the
        runtime is unknown (first match wins)."""
        runtimes = [runtime] if runtime is not None else list(Runtime)
        return tuple(dict.fromkeys(self.container_name(r, cid) for r in runtimes))
