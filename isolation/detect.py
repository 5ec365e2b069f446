"""Detection: which cgroup hierarchy the host runs, where it is mounted, and where kubelet
puts its pods. It reads `/proc/self/mountinfo` and the cgroup tree; it never guesses, and when
it cannot tell it says what it looked for and where.

    v2      one cgroup2 mount at the cgroup root (all controllers there)
    v1      cgroup (v1) mounts only, one per controller or co-mounted (`cpu,cpuacct`)
    hybrid  v1 controllers plus a cgroup2 mount (usually `unified/`, often no controllers):
            enforcement is v1; per-cgroup PSI comes from the cgroup2 mount
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from isolation.errors import DetectionError
from isolation.layout import Driver, KubeletLayout, join, normalize_cgroup

__all__ = ["AGENT_CONTROLLERS", "Hierarchy", "Mode", "detect_hierarchy", "detect_layout"]

V1_CONTROLLERS = frozenset(
    {
        "cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer", "devices",
        "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc",
    }
)  # fmt: skip
# The v1 controllers the agent cannot run without (it walks cpu and cpuset subtrees and
# holds batch's memory): a --cgroup-root at one controller's mount lacks the others.
AGENT_CONTROLLERS = ("cpu", "cpuset", "memory")
# Searching for kubelet's root stops this deep below the search base.
SEARCH_DEPTH = 5
_SLICE_ROOT = re.compile(r"^(?:(?P<prefix>.+)-)?kubepods\.slice$")


class Mode(StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """The mounted cgroup hierarchies under one cgroup root.

    `v1` maps each v1 controller to its mount point (empty on v2); `unified` is the cgroup2
    mount (the root itself on v2, e.g. `<root>/unified` on hybrid hosts, None on pure v1).
    """

    mode: Mode
    root: Path
    v1: Mapping[str, Path] = field(default_factory=dict)
    unified: Path | None = None
    # v2: the controllers available in the cgroup2 root (`cgroup.controllers`).
    v2_controllers: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        """The cgroup version that enforces limits (hybrid hosts enforce with v1)."""
        return 2 if self.mode is Mode.V2 else 1

    def reference(self) -> Path:
        """The one directory tree searched for kubelet's layout."""
        if self.mode is Mode.V2:
            assert self.unified is not None
            return self.unified
        for controller in ("cpu", "memory", "pids"):
            if controller in self.v1:
                return self.v1[controller]
        return next(iter(self.v1.values()))

    def mounts(self) -> dict[str, Path]:
        """Every directory a cgroup exists in, by controller (`unified` for cgroup2)."""
        out = dict(self.v1)
        if self.unified is not None:
            out["unified"] = self.unified
        return out


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def detect_hierarchy(
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    proc_root: str = "/proc",
    require: tuple[str, ...] = (),
) -> Hierarchy:
    """The cgroup mounts at or below `cgroup_root`, from `<proc_root>/self/mountinfo`; on
    cgroup v1 the controllers in `require` must be among them."""
    mountinfo = Path(proc_root) / "self" / "mountinfo"
    root = Path(os.path.realpath(cgroup_root))
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError as err:
        raise DetectionError(
            "cgroup hierarchy", f"cannot read {mountinfo}: {err.strerror}"
        ) from err
    v1: dict[str, Path] = {}
    unified: Path | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2]
        mountpoint = Path(_unescape(fields[4]))
        if fstype not in ("cgroup", "cgroup2") or not _under(mountpoint, root):
            continue
        if fstype == "cgroup2":
            unified = mountpoint
            continue
        for option in options.split(","):
            if option in V1_CONTROLLERS:
                v1[option] = mountpoint
    if unified is not None and not v1:
        if unified != root:
            raise DetectionError(
                "cgroup hierarchy",
                f"cgroup2 is mounted at {unified}, below {root}; pass --cgroup-root {unified}",
            )
        controllers = (unified / "cgroup.controllers").read_text().split()
        return Hierarchy(Mode.V2, root, {}, unified, frozenset(controllers))
    if not v1:
        raise DetectionError(
            "cgroup hierarchy",
            f"no cgroup or cgroup2 mount at or below {root} in {mountinfo}",
        )
    missing = [c for c in require if c not in v1]
    if missing:
        raise DetectionError(
            "cgroup hierarchy",
            f"no {', '.join(missing)} controller{'s' if len(missing) > 1 else ''} at or "
            f"below {root} (found "
            f"{', '.join(sorted(v1))}); pass the directory holding every controller's mount, "
            "e.g. --cgroup-root /sys/fs/cgroup",
        )
    return Hierarchy(Mode.HYBRID if unified else Mode.V1, root, v1, unified)


def _kind(name: str, parent: str) -> tuple[Driver, str] | None:
    """(driver, kubelet root) when `name` (inside relative dir `parent`) is a kubepods dir."""
    if name == "kubepods":
        return Driver.CGROUPFS, parent
    match = _SLICE_ROOT.match(name)
    if match is None:
        return None
    prefix = match.group("prefix")
    parent_last = parent.rsplit("/", 1)[-1]
    # `kube-kubepods.slice` must sit in `kube.slice`; a bare `kubepods.slice` in a non-slice.
    if prefix is not None and parent_last != prefix + ".slice":
        return None
    return Driver.SYSTEMD, parent


def _drivers_in(reference: Path, root: str) -> list[Driver]:
    layouts = [KubeletLayout(d, root) for d in Driver]
    return [lay.driver for lay in layouts if (reference / lay.kubepods()).is_dir()]


def _search(reference: Path, base: str) -> list[tuple[Driver, str]]:
    found: list[tuple[Driver, str]] = []
    frontier = [base]
    for _ in range(SEARCH_DEPTH):
        deeper = []
        for rel in frontier:
            try:
                entries = list(os.scandir(reference / rel))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                kind = _kind(entry.name, rel)
                if kind is not None:
                    found.append(kind)
                else:
                    deeper.append(join(rel, entry.name))
        frontier = deeper
    return found


def detect_layout(
    hierarchy: Hierarchy, kubelet_root: str | None = None, search_base: str = ""
) -> KubeletLayout:
    """Kubelet's driver and cgroup root. With `kubelet_root` (kubelet's `--cgroup-root`) only
    the driver is read from the tree; without it the tree below `search_base` is searched
    (`SEARCH_DEPTH` levels) and exactly one kubepods directory must be found."""
    reference = hierarchy.reference()
    if kubelet_root is not None:
        root = normalize_cgroup(kubelet_root)
        where = reference / root
        if not where.is_dir():
            raise DetectionError("kubelet cgroup root", f"{where} does not exist")
        drivers = _drivers_in(reference, root)
        if len(drivers) != 1:
            names = ", ".join(KubeletLayout(d, root).kubepods() for d in Driver)
            state = "neither" if not drivers else "both"
            raise DetectionError(
                "kubelet cgroup driver", f"{state} of {names} found under {reference}"
            )
        return KubeletLayout(drivers[0], root)
    base = normalize_cgroup(search_base)
    found = _search(reference, base)
    where = reference / base
    if not found:
        raise DetectionError(
            "kubelet cgroup root",
            f"no kubepods or *kubepods.slice directory within {SEARCH_DEPTH} levels of "
            f"{where}; pass --kubelet-cgroup-root",
        )
    if len(found) > 1:
        listed = ", ".join(f"{KubeletLayout(d, r).kubepods()} ({d})" for d, r in found)
        raise DetectionError(
            "kubelet cgroup root",
            f"{len(found)} kubelet trees under {where}: {listed}; pass --kubelet-cgroup-root",
        )
    driver, root = found[0]
    return KubeletLayout(driver, root)
