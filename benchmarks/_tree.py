"""The one adapter through which the benchmarks get a kubelet-like cgroup tree.

`build_tree()` is the only entry point; the benchmarks use nothing but the `BenchTree` it
returns. The tree itself is `lab.kubelet_tree.KubeletTree` (cgroupfs driver, containerd
naming): kubepods, the QoS levels, pod and container cgroups with kubelet's cpu.shares,
quota and memory limits, built beneath this process's own cgroup and removed on close.
This adapter adds what a node has and the benchmarks need on top of that:

- kubepods' memory limit (node allocatable), which makes the tree a node-sized memory
  cgroup;
- kubelet's `oom_score_adj` on every process placed (BestEffort 1000, Burstable from its
  memory request, Guaranteed -997), so the OOM killer chooses as on a node;
- levels by name, and reading/writing their cgroup v1 files for the measurements.

Safety on a shared machine: PIDs are placed without giving the tree their ownership;
`close()` kills only placed PIDs that are still inside this tree (so a PID the harness has
already reaped, and the kernel reused, is never signalled), then lets KubeletTree remove
every directory it made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.errors import TreeError
from isolation.errors import IsolationError
from isolation.layout import Driver, Runtime
from lab.kubelet_tree import KubeletTree
from qos.k8s_qos import QOSClass, pod_qos_class
from qos.pod import MEMORY, Pod

__all__ = ["CFS_PERIOD_US", "BenchTree", "CgroupDir", "build_tree", "remove_cgroup"]

CFS_PERIOD_US = 100_000
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000
# The v1 files the benchmarks read and write, by the controller their prefix names.
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")


@dataclass(frozen=True)
class CgroupDir:
    """One level of the tree: its directory in each controller's hierarchy."""

    name: str
    paths: Mapping[str, Path]

    def file(self, filename: str) -> Path:
        controller = filename.split(".", 1)[0]
        if controller not in CONTROLLERS or controller not in self.paths:
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

    def __init__(self, tree: KubeletTree, node_memory_bytes: int) -> None:
        self.kubelet_tree = tree
        self._node_memory = node_memory_bytes
        self._pods: dict[str, Pod] = {}
        self._placed: list[int] = []

    @property
    def top(self) -> str:
        """The tree's root (relative to each hierarchy), as kubelet's --cgroup-root."""
        return self.kubelet_tree.root

    def __enter__(self) -> BenchTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dir(self, name: str, cgroup: str) -> CgroupDir:
        mounts = self.kubelet_tree.mounts
        return CgroupDir(name, {c: mounts[c] / cgroup for c in CONTROLLERS if c in mounts})

    @property
    def kubepods(self) -> CgroupDir:
        return self._dir("kubepods", self.kubelet_tree.layout.kubepods())

    def qos(self, qos_class: QOSClass) -> CgroupDir:
        return self._dir(qos_class.value.lower(), self.kubelet_tree.layout.qos_cgroup(qos_class))

    def _pod(self, name: str) -> Pod:
        try:
            return self._pods[name]
        except KeyError:
            raise TreeError(f"use pod {name}: no such pod in tree {self.top}") from None

    def pod(self, name: str) -> CgroupDir:
        return self._dir(f"pod:{name}", self.kubelet_tree.pod_cgroup(self._pod(name)))

    def container(self, pod: str, container: str) -> CgroupDir:
        spec = self._pod(pod)
        if container not in spec.container_ids:
            raise TreeError(f"use container {pod}/{container}: no such container")
        cgroup = self.kubelet_tree.container_cgroup(spec, container)
        return self._dir(f"container:{pod}/{container}", cgroup)

    def add_pod(self, pod: Pod) -> None:
        self._pods[pod.name] = self.kubelet_tree.add_pod(pod)

    def place(self, pod: str, container: str, pid: int) -> None:
        """Move a process this caller started into the container's cgroups (every
        hierarchy) and give it kubelet's oom_score_adj."""
        spec = self._pod(pod)
        cgroup = self.kubelet_tree.container_cgroup(spec, container)
        self._placed.append(pid)
        try:
            self.kubelet_tree.attach(pid, cgroup, own=False)
        except OSError as err:
            raise TreeError(f"place pid {pid} in {cgroup}: {err.strerror}") from err
        adj = self._oom_score_adj(spec, container)
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
        request = int(spec.resources.requests.get(MEMORY, 0))
        adj = 1000 - 1000 * request // self._node_memory
        return min(max(adj, 1000 + GUARANTEED_OOM_SCORE_ADJ), BESTEFFORT_OOM_SCORE_ADJ - 1)

    def close(self) -> None:
        """Kill the placed PIDs still in this tree, then remove the tree.

        They are not reaped here: the caller that started them keeps their exit status (a
        zombie does not keep a v1 cgroup busy).
        """
        for pid in self._placed:
            if self._still_inside(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._placed.clear()
        self.kubelet_tree.close()

    def _still_inside(self, pid: int) -> bool:
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return f"/{self.top}/" in text


def build_tree(pods: Iterable[Pod], node_cpu_milli: int, node_memory_bytes: int) -> BenchTree:
    """Build kubepods/{burstable,besteffort}/pod<uid>/<container> for `pods`, in a node of
    `node_cpu_milli` CPU and `node_memory_bytes` memory (kubepods' limit).

    On failure everything created so far is removed before the error propagates.
    """
    try:
        tree = KubeletTree(
            Driver.CGROUPFS, Runtime.CONTAINERD, node_cpus=max(1, node_cpu_milli // 1000)
        )
    except (IsolationError, OSError) as err:
        raise TreeError(f"build tree: {err}") from err
    bench = BenchTree(tree, node_memory_bytes)
    try:
        tree.open()
        tree.cgroups.write("memory.max", tree.layout.kubepods(), node_memory_bytes)
        for pod in pods:
            bench.add_pod(pod)
    except (IsolationError, OSError) as err:
        bench.close()
        raise TreeError(f"build tree {tree.root}: {err}") from err
    except BaseException:
        bench.close()
        raise
    return bench


def remove_cgroup(path: Path, timeout: float = 10.0) -> None:
    """rmdir a cgroup a benchmark made beside the tree (the agent's own); a task that is
    exiting may hold it a moment, so retry for `timeout` s, then raise."""
    deadline = time.monotonic() + timeout
    while path.exists():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
