"""The one adapter through which the benchmarks get a kubelet-like cgroup tree (v1, cgroupfs).

`build_tree()` is the only entry point; the benchmarks use nothing but the `BenchTree` it
returns. It stands in for `agent/kubelet_tree.py` until that lands, and is meant to be
swapped for it in this one place.

The layout and values are kubelet's (cgroupfs driver, cgroup v1): `kubepods` (shares from
node allocatable, memory limit = the node), `kubepods/burstable` (shares = the sum of
requests), `kubepods/besteffort` (shares 2), `…/pod<uid>/<container-id>` with shares from
requests, CFS quota and memory limit from limits, and kubelet's oom_score_adj on each
process placed.

Safety (the tree is built on a shared machine): for every controller it nests beneath the
cgroup this process is already in (/proc/self/cgroup), under a private
`colocd-bench-<random>` directory. It never moves this process and never writes to its own
cgroup's files. `close()` kills only PIDs it placed that are still inside its tree, then
removes every directory it created, bottom-up, even after a failed build.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from benchmarks.errors import TreeError
from qos.k8s_qos import QOSClass, pod_qos_class
from qos.pod import CPU, MEMORY, Container, Pod

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
CFS_PERIOD_US = 100_000
MIN_SHARES = 2
MIN_QUOTA_US = 1000
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000
RMDIR_PATIENCE_S = 5.0
# A file's controller is its prefix ("cpu.shares" -> cpu); cgroup.* files live in every one.
_FILE_CONTROLLER = {"cpu": "cpu", "cpuacct": "cpuacct", "cpuset": "cpuset", "memory": "memory"}


def milli_to_shares(milli: int) -> int:
    """kubelet's MilliCPUToShares."""
    return max(MIN_SHARES, milli * 1024 // 1000)


def _milli(quantity: Decimal | None) -> int:
    return 0 if quantity is None else int(quantity * 1000)


def _request(container: Container, name: str) -> Decimal | None:
    return container.resources.requests.get(name)


def _limit(container: Container, name: str) -> Decimal | None:
    return container.resources.limits.get(name)


@dataclass(frozen=True)
class CgroupDir:
    """One level of the tree: its directory in each controller's hierarchy."""

    name: str
    paths: Mapping[str, Path]

    def file(self, filename: str) -> Path:
        controller = _FILE_CONTROLLER.get(filename.split(".", 1)[0])
        if controller is None:
            raise TreeError(f"use {self.name}/{filename}: not a cpu/cpuacct/cpuset/memory file")
        return self.paths[controller] / filename

    def read(self, filename: str) -> str:
        path = self.file(filename)
        try:
            return path.read_text().strip()
        except OSError as err:
            raise TreeError(f"read {path}: {err.strerror}") from err

    def write(self, filename: str, value: str | int) -> None:
        path = self.file(filename)
        try:
            path.write_text(str(value))
        except OSError as err:
            raise TreeError(f"write {value} to {path}: {err.strerror}") from err


class BenchTree:
    """A built tree. Levels: `kubepods`, `qos(...)`, `pod(name)`, `container(pod, name)`."""

    def __init__(self, top: str, pods: Mapping[str, Pod], node_memory_bytes: int) -> None:
        self.top = top
        self._pods = dict(pods)
        self._node_memory = node_memory_bytes
        self._levels: dict[str, CgroupDir] = {}
        self._created: list[Path] = []
        self._placed: list[int] = []
        self.kubepods: CgroupDir

    def __enter__(self) -> BenchTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def qos(self, qos_class: QOSClass) -> CgroupDir:
        if qos_class is QOSClass.GUARANTEED:
            return self.kubepods
        return self._levels[qos_class.value.lower()]

    def pod(self, name: str) -> CgroupDir:
        return self._level(f"pod:{name}")

    def container(self, pod: str, container: str) -> CgroupDir:
        return self._level(f"container:{pod}/{container}")

    def _level(self, key: str) -> CgroupDir:
        try:
            return self._levels[key]
        except KeyError:
            raise TreeError(f"use {key}: no such level in tree {self.top}") from None

    def place(self, pod: str, container: str, pid: int) -> None:
        """Move a process this caller started into the container's cgroups (all controllers)."""
        level = self.container(pod, container)
        self._placed.append(pid)
        for path in level.paths.values():
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as err:
                raise TreeError(f"place pid {pid} in {path}: {err.strerror}") from err
        adj = self._oom_score_adj(self._pods[pod], container)
        try:
            Path(f"/proc/{pid}/oom_score_adj").write_text(str(adj))
        except OSError as err:
            hint = " (lowering it needs CAP_SYS_RESOURCE)" if adj < 0 else ""
            raise TreeError(
                f"set oom_score_adj of pid {pid} to {adj}: {err.strerror}{hint}"
            ) from err

    def _oom_score_adj(self, pod: Pod, container: str) -> int:
        """kubelet's GetContainerOOMScoreAdjust."""
        qos_class = pod_qos_class(pod)
        if qos_class is QOSClass.GUARANTEED:
            return GUARANTEED_OOM_SCORE_ADJ
        if qos_class is QOSClass.BEST_EFFORT:
            return BESTEFFORT_OOM_SCORE_ADJ
        spec = next(c for c in pod.containers if c.name == container)
        request = int(_request(spec, MEMORY) or 0)
        adj = 1000 - 1000 * request // self._node_memory
        return min(max(adj, 1000 + GUARANTEED_OOM_SCORE_ADJ), BESTEFFORT_OOM_SCORE_ADJ - 1)

    # -- building ---------------------------------------------------------------------------

    def _mkdir(
        self, key: str, parent: CgroupDir | None, name: str, bases: Mapping[str, Path]
    ) -> CgroupDir:
        paths: dict[str, Path] = {}
        made: set[Path] = set()
        for controller, base in bases.items():
            path = (parent.paths[controller] if parent else base) / name
            paths[controller] = path
            # cpu and cpuacct may be one co-mounted hierarchy: create each directory once.
            real = path.parent.resolve() / name
            if real in made:
                continue
            try:
                path.mkdir()
            except OSError as err:
                raise TreeError(f"create cgroup {path}: {err.strerror}") from err
            made.add(real)
            self._created.append(path)
            if controller == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((path.parent / knob).read_text())
        level = CgroupDir(key, paths)
        self._levels[key] = level
        return level

    def _build(self, bases: Mapping[str, Path], node_cpu_milli: int) -> None:
        top = self._mkdir("top", None, self.top, bases)
        kubepods = self.kubepods = self._mkdir("kubepods", top, "kubepods", bases)
        # On a node kubepods sits at the root with these shares, against system daemons; the
        # private top dir stands where it would, so it gets the same weight against the rest.
        top.write("cpu.shares", milli_to_shares(node_cpu_milli))
        kubepods.write("cpu.shares", milli_to_shares(node_cpu_milli))
        kubepods.write("memory.limit_in_bytes", self._node_memory)
        by_class = {p.name: pod_qos_class(p) for p in self._pods.values()}
        burstable_milli = sum(
            _milli(_request(c, CPU))
            for p in self._pods.values()
            if by_class[p.name] is QOSClass.BURSTABLE
            for c in p.containers
        )
        for qos_class, shares in (
            (QOSClass.BURSTABLE, milli_to_shares(burstable_milli)),
            (QOSClass.BEST_EFFORT, MIN_SHARES),
        ):
            level = self._mkdir(qos_class.value.lower(), kubepods, qos_class.value.lower(), bases)
            level.write("cpu.shares", shares)
        for pod in self._pods.values():
            self._build_pod(pod, self.qos(by_class[pod.name]), bases)

    def _build_pod(self, pod: Pod, parent: CgroupDir, bases: Mapping[str, Path]) -> None:
        level = self._mkdir(f"pod:{pod.name}", parent, f"pod{pod.uid}", bases)
        _write_resources(level, pod.containers)
        for container in pod.containers:
            digest = hashlib.sha256(f"{pod.uid}/{container.name}".encode()).hexdigest()
            child = self._mkdir(f"container:{pod.name}/{container.name}", level, digest, bases)
            _write_resources(child, (container,))

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Kill the placed PIDs still in this tree, then remove every directory, bottom-up."""
        # Not reaped here: the caller that started them keeps their exit status (a zombie
        # does not keep a v1 cgroup busy).
        for pid in self._placed:
            if self._still_inside(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._placed.clear()
        failures = [path for path in reversed(self._created) if not _rmdir_patiently(path)]
        self._created.clear()
        if failures:
            raise TreeError(f"remove cgroup {failures[0]}: still busy after {RMDIR_PATIENCE_S} s")

    def _still_inside(self, pid: int) -> bool:
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return f"/{self.top}/" in text


def _write_resources(level: CgroupDir, containers: Sequence[Container]) -> None:
    """kubelet's pod/container values: shares from requests, quota and memory from limits."""
    level.write("cpu.shares", milli_to_shares(sum(_milli(_request(c, CPU)) for c in containers)))
    cpu_limits = [_limit(c, CPU) for c in containers]
    if all(limit is not None for limit in cpu_limits):
        quota = sum(_milli(limit) for limit in cpu_limits) * CFS_PERIOD_US // 1000
        level.write("cpu.cfs_period_us", CFS_PERIOD_US)
        level.write("cpu.cfs_quota_us", max(quota, MIN_QUOTA_US))
    memory_limits = [_limit(c, MEMORY) for c in containers]
    if all(limit is not None for limit in memory_limits):
        level.write("memory.limit_in_bytes", sum(int(limit or 0) for limit in memory_limits))


def _rmdir_patiently(path: Path) -> bool:
    deadline = time.monotonic() + RMDIR_PATIENCE_S
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def own_cgroups(proc_self_cgroup: Path, cgroup_root: Path) -> dict[str, Path]:
    """This process's cgroup directory in each v1 controller the tree uses."""
    own: dict[str, Path] = {}
    for line in proc_self_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in CONTROLLERS:
                own[controller] = cgroup_root / controller / path.lstrip("/")
    missing = [c for c in CONTROLLERS if c not in own or not (own[c] / "cgroup.procs").exists()]
    if missing:
        raise TreeError(
            f"find cgroup v1 controllers {','.join(missing)}: not mounted under {cgroup_root}"
        )
    return own


def build_tree(
    pods: Iterable[Pod],
    node_cpu_milli: int,
    node_memory_bytes: int,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    proc_self_cgroup: Path = Path("/proc/self/cgroup"),
) -> BenchTree:
    """Build kubepods/{burstable,besteffort}/pod<uid>/<container> for `pods` (each needs a uid).

    On failure everything created so far is removed before the error propagates.
    """
    pods_by_name = {pod.name: pod for pod in pods}
    if any(not pod.uid for pod in pods_by_name.values()):
        raise TreeError("build tree: every pod needs a uid")
    bases = own_cgroups(proc_self_cgroup, cgroup_root)
    tree = BenchTree(f"colocd-bench-{secrets.token_hex(4)}", pods_by_name, node_memory_bytes)
    try:
        tree._build(bases, node_cpu_milli)
    except BaseException:
        tree.close()
        raise
    return tree
