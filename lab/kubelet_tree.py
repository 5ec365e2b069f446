"""A kubelet-like cgroup tree on the real kernel, for tests, the demo and benchmarks.

`KubeletTree` does what kubelet and the runtime would do for a set of pods: it creates
`kubepods`, the QoS levels, one cgroup per pod and one per container (either driver's naming,
containerd / CRI-O / docker scopes), sets what kubelet sets (cpu.shares from requests,
besteffort 2, CFS quota and memory limits from limits) and moves processes in. On a hybrid
host it mirrors every cgroup into the cgroup2 mount, as systemd does, so per-pod PSI is
readable. `close()` (or leaving the `with` block) thaws what it created, kills only the
processes it was given to own, and removes every directory it created, bottom-up, even
after a failure.

Where it builds: beneath the caller's own cgroup. On v1 that is `<own memory cgroup>/
colocd-test-<random>`, the same relative path under every controller (the intermediate
directories missing under the other controllers are created and later removed); on v2 it is
`<own cgroup>/colocd-test-<random>`. That relative path is kubelet's `--cgroup-root` for the
tree (`tree.root`), so `detect_layout(hierarchy, tree.root)` finds it.

    with KubeletTree(Driver.SYSTEMD, Runtime.CRIO) as tree:
        pod = tree.add_pod(pod)                      # container IDs filled in
        proc = tree.spawn(pod, "app", [sys.executable, "-c", "while True: pass"])
        tree.cgroups.sample(tree.container_cgroup(pod, "app"))

The cgroupspy package is not used here: it opens a file per access, turns ENOENT/EACCES/EINVAL
into None and knows nothing of v2; the tree writes through `isolation.cgroups` instead, so
kubelet's values go through the same knob table colocd enforces with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from isolation.cgroups import Cgroups
from isolation.detect import Hierarchy, Mode, detect_hierarchy
from isolation.errors import IsolationError
from isolation.knobs import CpuMax
from isolation.layout import Driver, KubeletLayout, Runtime, join, normalize_cgroup
from isolation.procs import alive
from qos.k8s_qos import QOSClass, pod_qos_class
from qos.pod import Container, ContainerRuntimeID, Pod
from qos.state import pod_state

__all__ = ["BUSY_LOOP", "SURGE_WORKER", "KubeletTree", "own_cgroup"]

log = logging.getLogger(__name__)

CFS_PERIOD_US = 100_000
# Workloads to spawn into a tree's containers: a CPU hog, and a worker that idles until a
# line `SECONDS` on its stdin makes it spin that long (then it prints `done <unix time it
# started spinning>`): an online surge on demand.
BUSY_LOOP = (sys.executable, "-c", "while True: pass")
SURGE_WORKER = (
    sys.executable,
    "-u",
    "-c",
    "import sys, time\n"
    "for line in sys.stdin:\n"
    "    began, end = time.time(), time.perf_counter() + float(line)\n"
    "    while time.perf_counter() < end: pass\n"
    "    print('done', began, flush=True)\n",
)
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids", "hugetlb")
HUGETLB_UNBOUNDED = 1 << 62  # kubelet's setHugePagesUnbounded


def own_cgroup(hierarchy: Hierarchy, proc_root: str = "/proc") -> str:
    """The caller's cgroup (relative): the memory controller's on v1, the unified one on v2."""
    want = "0" if hierarchy.mode is Mode.V2 else "memory"
    for line in Path(proc_root, "self", "cgroup").read_text().splitlines():
        ident, controllers, path = line.split(":", 2)
        if (want == "0" and ident == "0") or want in controllers.split(","):
            return normalize_cgroup(path)
    raise IsolationError(f"find own cgroup: no {want} line in {proc_root}/self/cgroup")


def milli_to_shares(milli: int) -> int:
    """kubelet's MilliCPUToShares."""
    return min(max(milli * 1024 // 1000, 2), 262144)


def kubelet_weight(shares: int) -> int:
    """kubelet's getCPUWeight (pkg/kubelet/cm/cgroup_manager_linux.go): the linear
    conversion kubelet still uses for the pod and QoS cgroups it writes itself (the runtimes
    convert container shares with the quadratic of isolation.knobs.shares_to_weight)."""
    if shares >= 262144:
        return 10000
    return 1 + ((shares - 2) * 9999) // 262142


class QosWriteError(NamedTuple):
    """One write of kubelet's QoS rewrite that the kernel refused (kubelet's Update of that
    level stops there)."""

    cgroup: str
    file: str
    value: str
    error: str


def milli_to_quota(milli: int) -> int:
    """kubelet's MilliCPUToQuota (period 100 ms, at least 1 ms)."""
    return max(milli * CFS_PERIOD_US // 1000, 1000)


class KubeletTree:
    def __init__(
        self,
        driver: Driver = Driver.CGROUPFS,
        runtime: Runtime = Runtime.CONTAINERD,
        *,
        cgroup_root: str = "/sys/fs/cgroup",
        proc_root: str = "/proc",
        hierarchy: Hierarchy | None = None,
        node_cpus: int | None = None,
    ) -> None:
        self.hierarchy = hierarchy or detect_hierarchy(cgroup_root, proc_root)
        self.cgroups = Cgroups(self.hierarchy)
        self.runtime = runtime
        self.root = join(
            own_cgroup(self.hierarchy, proc_root), f"colocd-test-{secrets.token_hex(4)}"
        )
        self.layout = KubeletLayout(driver, self.root)
        self.node_cpus = node_cpus or os.cpu_count() or 1
        self.pods: dict[str, Pod] = {}
        self._created: list[Path] = []  # every directory made, in creation order
        self._owned: dict[int, subprocess.Popen[Any] | None] = {}
        self._open = False

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> KubeletTree:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self._open:
            return
        self._open = True
        try:
            self._mkdirs(self.root)
            self._mkdirs(self.layout.kubepods())
            self._kubelet_shares(self.layout.kubepods(), milli_to_shares(self.node_cpus * 1000))
            for qos in (QOSClass.BURSTABLE, QOSClass.BEST_EFFORT):
                self._mkdirs(self.layout.qos_cgroup(qos))
                self._kubelet_shares(self.layout.qos_cgroup(qos), 2)
        except BaseException:
            self.close()
            raise

    @property
    def mounts(self) -> dict[str, Path]:
        """Every hierarchy the tree is built in (v1 controllers, and the cgroup2 mount)."""
        return self.hierarchy.mounts()

    def _mkdirs(self, cgroup: str) -> None:
        """Create `cgroup` (and missing parents) in every hierarchy; remember what was made."""
        parts = cgroup.split("/")
        for name, mount in self.mounts.items():
            for depth in range(1, len(parts) + 1):
                rel = "/".join(parts[:depth])
                path = mount / rel
                try:
                    path.mkdir()
                except FileExistsError:
                    continue
                self._created.append(path)
                if name == "cpuset":
                    self._inherit_cpuset(rel)
                if name == "unified" and self.hierarchy.mode is Mode.V2:
                    self._enable_controllers(parts[: depth - 1])

    def _inherit_cpuset(self, rel: str) -> None:
        """A new v1 cpuset starts empty; copy the parent's cpus and mems, as runc does."""
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        for knob_name in ("cpuset.mems", "cpuset.cpus"):
            self.cgroups.write(knob_name, rel, self.cgroups.read(knob_name, parent).value)

    def _enable_controllers(self, parent_parts: list[str]) -> None:
        """v2: a cgroup's files appear only when its parent enables the controller."""
        assert self.hierarchy.unified is not None
        parent = self.hierarchy.unified.joinpath(*parent_parts)
        available = (parent / "cgroup.controllers").read_text().split()
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            try:
                (parent / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
            except OSError as err:
                raise IsolationError(
                    f"enable {' '.join(wanted)} in {parent}: {err.strerror} (a cgroup that holds "
                    "processes cannot enable controllers; run from a delegated cgroup)"
                ) from err

    # --- kubelet's own writes -------------------------------------------------------------

    def _file(self, controller: str, cgroup: str, name: str) -> Path:
        """A cgroup file as kubelet's libcontainer addresses it (v1 mount or the v2 root)."""
        mount = self.hierarchy.unified if self.hierarchy.mode is Mode.V2 else None
        mount = mount or self.hierarchy.v1[controller]
        return mount / cgroup / name

    def _kubelet_shares(self, cgroup: str, shares: int) -> None:
        """cpu.shares on a pod or QoS cgroup as kubelet writes it: v2 through its own linear
        getCPUWeight (containers' weights come from the runtime: the knob table)."""
        if self.hierarchy.mode is Mode.V2:
            self._file("cpu", cgroup, "cpu.weight").write_text(str(kubelet_weight(shares)))
        else:
            self.cgroups.write("cpu.shares", cgroup, shares)

    def qos_requests(self) -> tuple[int, int, int]:
        """(burstable CPU millicores, guaranteed memory, burstable memory) requested by the
        tree's pods: what kubelet's QoS manager sums (setCPUCgroupConfig,
        getQoSMemoryRequests)."""
        cpu = g_mem = b_mem = 0
        for p in self.pods.values():
            qos, state = pod_qos_class(p), pod_state(p)
            if qos is QOSClass.BURSTABLE:
                cpu += state.requests.cpu_milli or 0
                b_mem += state.requests.memory_bytes or 0
            elif qos is QOSClass.GUARANTEED:
                g_mem += state.requests.memory_bytes or 0
        return cpu, g_mem, b_mem

    def _qos_configs(self, memory_qos: bool) -> list[tuple[str, list[tuple[str, str, str]]]]:
        """kubelet's UpdateCgroups for each QoS cgroup: (controller, file, value) in the
        order libcontainer's Set writes them (v2 fs2.Set: memory, cpu, hugetlb, unified;
        v1 fs.Set: memory, cpu, hugetlb). MemoryQoS (v2 only) adds memory.min on burstable
        (its pods' memory requests) and kubepods (guaranteed + burstable)."""
        v2 = self.hierarchy.mode is Mode.V2
        cpu, g_mem, b_mem = self.qos_requests()

        def shares(value: int) -> tuple[str, str, str]:
            if v2:
                return ("cpu", "cpu.weight", str(kubelet_weight(value)))
            return ("cpu", "cpu.shares", str(value))

        hugetlb = []
        for size in sorted(self._huge_page_sizes()):
            name = f"hugetlb.{size}.max" if v2 else f"hugetlb.{size}.limit_in_bytes"
            hugetlb.append(("hugetlb", name, str(HUGETLB_UNBOUNDED)))
        configs = {
            self.layout.kubepods(): [*hugetlb],
            self.layout.qos_cgroup(QOSClass.BURSTABLE): [shares(milli_to_shares(cpu)), *hugetlb],
            self.layout.qos_cgroup(QOSClass.BEST_EFFORT): [shares(2), *hugetlb],
        }
        if memory_qos and v2:
            if b_mem > 0:
                configs[self.layout.qos_cgroup(QOSClass.BURSTABLE)].append(
                    ("memory", "memory.min", str(b_mem))
                )
            if g_mem + b_mem > 0:
                configs[self.layout.kubepods()].append(("memory", "memory.min", str(g_mem + b_mem)))
        return list(configs.items())

    def _huge_page_sizes(self) -> list[str]:
        """The page sizes the kernel has, named as libcontainer names them (2MB, 1GB)."""
        out = []
        with contextlib.suppress(OSError):
            for entry in os.listdir("/sys/kernel/mm/hugepages"):
                kb = int(entry.removeprefix("hugepages-").removesuffix("kB"))
                out.append(f"{kb >> 20}GB" if kb >= 1 << 20 else f"{kb >> 10}MB")
        return out

    def kubelet_qos_update(self, *, memory_qos: bool = False) -> list[QosWriteError]:
        """Replay kubelet's periodic QoS rewrite (qosContainerManagerImpl.UpdateCgroups,
        every minute and on every pod sync): the same files and values, in the order
        libcontainer writes them, each level's writes stopping at its first error as
        kubelet's Update does. A file whose controller is not there is skipped, as
        libcontainer skips an optional subsystem. v1 reads cpu.shares back, as fs.CpuGroup
        does. Returns what the kernel refused (empty: the rewrite succeeded)."""
        errors = []
        for cgroup, writes in self._qos_configs(memory_qos):
            for controller, name, value in writes:
                if controller not in self.hierarchy.v1 and self.hierarchy.mode is not Mode.V2:
                    continue
                path = self._file(controller, cgroup, name)
                if not path.exists():
                    continue
                try:
                    path.write_text(value)
                    if name == "cpu.shares" and path.read_text().strip() != value:
                        raise OSError(errno.EINVAL, f"cpu.shares reads {path.read_text().strip()}")
                except OSError as err:
                    errors.append(QosWriteError(cgroup, name, value, str(err)))
                    break
        return errors

    # --- pods --------------------------------------------------------------------------------

    def pod_cgroup(self, pod: Pod) -> str:
        return self.layout.pod_cgroup(pod_qos_class(pod), pod.uid)

    def container_cgroup(self, pod: Pod, container: str) -> str:
        cid = self.pods[pod.uid].container_ids[container]
        return join(self.pod_cgroup(pod), self.layout.container_name(Runtime(cid.runtime), cid.id))

    def add_pod(self, pod: Pod) -> Pod:
        """Create the pod's cgroups as kubelet and the runtime would. A missing UID or
        container ID is generated; the returned pod carries them."""
        uid = pod.uid or str(uuid.uuid4())
        ids = dict(pod.container_ids)
        for c in pod.containers:
            ids.setdefault(c.name, ContainerRuntimeID(self.runtime.value, secrets.token_hex(32)))
        pod = dataclasses.replace(pod, uid=uid, container_ids=ids)
        self.pods[uid] = pod
        state = pod_state(pod)
        pod_cg = self.pod_cgroup(pod)
        self._mkdirs(pod_cg)
        self._set_kubelet_values(
            pod_cg, state.requests.cpu_milli, state.limits.cpu_milli, state.limits.memory_bytes
        )
        for c in pod.containers:
            cg = self.container_cgroup(pod, c.name)
            self._mkdirs(cg)
            req, lim = c.resources.requests, c.resources.limits
            self._set_kubelet_values(
                cg,
                int(req["cpu"] * 1000) if "cpu" in req else 0,
                int(lim["cpu"] * 1000) if "cpu" in lim else None,
                int(lim["memory"]) if "memory" in lim else None,
                runtime=True,
            )
        self._update_burstable_shares()
        return pod

    def _set_kubelet_values(
        self,
        cgroup: str,
        cpu_request: int | None,
        cpu_limit: int | None,
        memory: int | None,
        *,
        runtime: bool = False,
    ) -> None:
        """What kubelet sets on a pod cgroup, or (`runtime`) the runtime on a container's."""
        shares = milli_to_shares(cpu_request or 0)
        if runtime:
            self.cgroups.write("cpu.shares", cgroup, shares)
        else:
            self._kubelet_shares(cgroup, shares)
        if cpu_limit is not None:
            self.cgroups.write("cpu.max", cgroup, CpuMax(milli_to_quota(cpu_limit), CFS_PERIOD_US))
        if memory is not None:
            self.cgroups.write("memory.max", cgroup, memory)

    def _update_burstable_shares(self) -> None:
        burstable = [p for p in self.pods.values() if pod_qos_class(p) is QOSClass.BURSTABLE]
        milli = sum(pod_state(p).requests.cpu_milli or 0 for p in burstable)
        self._kubelet_shares(self.layout.qos_cgroup(QOSClass.BURSTABLE), milli_to_shares(milli))

    def manifest(self, pod: Pod) -> dict[str, Any]:
        """The pod (as `add_pod` returned it) as kubelet would report it: a Pod document
        with its UID and the containers' IDs in status, for a manifest-directory source."""

        def container(c: Container) -> dict[str, Any]:
            res = {
                kind: {k: str(v) for k, v in getattr(c.resources, kind).items()}
                for kind in ("requests", "limits")
            }
            return {"name": c.name, "image": "x", "resources": res}

        spec: dict[str, Any] = {"containers": [container(c) for c in pod.containers]}
        if pod.priority is not None:
            spec["priority"] = pod.priority
        status: dict[str, Any] = {
            "containerStatuses": [
                {"name": n, "containerID": f"{cid.runtime}://{cid.id}"}
                for n, cid in pod.container_ids.items()
            ]
        }
        if pod.phase:
            status["phase"] = pod.phase
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": pod.namespace,
                "uid": pod.uid,
                "labels": dict(pod.labels),
                "annotations": dict(pod.annotations),
            },
            "spec": spec,
            "status": status,
        }

    def bound(self, pod: Pod, node_name: str) -> dict[str, Any]:
        """`manifest(pod)` as the API server holds it once scheduled on `node_name` and
        running (for a Kubernetes pod source)."""
        obj = self.manifest(pod)
        obj["spec"]["nodeName"] = node_name
        obj["status"]["phase"] = "Running"
        return obj

    def write_manifest(self, pod: Pod, directory: Path) -> Path:
        """Write `manifest(pod)` as `<namespace>_<name>.json` into `directory`."""
        path = directory / f"{pod.namespace}_{pod.name}.json"
        path.write_text(json.dumps(self.manifest(pod)))
        return path

    def remove_pod(self, pod: Pod) -> None:
        """What kubelet does when a pod goes: its processes die and its cgroups are removed."""
        pod_cg = self.pod_cgroup(pod)
        for pid in self._pids_in(pod_cg):
            self._kill(pid)
        self._remove_below(pod_cg, including=True)
        self.pods.pop(pod.uid, None)
        self._update_burstable_shares()

    # --- processes ---------------------------------------------------------------------------

    def _procs_files(self, cgroup: str) -> list[str]:
        return [str(mount / cgroup / "cgroup.procs") for mount in self.mounts.values()]

    def attach(self, pid: int, cgroup: str, *, own: bool = True) -> None:
        """Move `pid` into `cgroup` in every hierarchy; `own` means close() will kill it."""
        for procs in self._procs_files(cgroup):
            with open(procs, "w") as f:
                f.write(str(pid))
        if own:
            self._owned.setdefault(pid, None)

    def spawn(
        self, pod: Pod, container: str, argv: Sequence[str], **popen: Any
    ) -> subprocess.Popen[Any]:
        """Start `argv` inside the container's cgroups (it moves itself before exec); the
        tree owns the process."""
        files = self._procs_files(self.container_cgroup(pod, container))

        def enter() -> None:
            for procs in files:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)

        proc = subprocess.Popen(argv, preexec_fn=enter, **popen)  # noqa: PLW1509
        self._owned[proc.pid] = proc
        return proc

    def _pids_in(self, cgroup: str) -> list[int]:
        """Owned PIDs anywhere below `cgroup` (read from the first hierarchy)."""
        mount = next(iter(self.mounts.values()))
        found = []
        for dirpath, _dirs, _files in os.walk(mount / cgroup):
            with contextlib.suppress(OSError):
                for line in Path(dirpath, "cgroup.procs").read_text().split():
                    if int(line) in self._owned:
                        found.append(int(line))
        return found

    def _kill(self, pid: int) -> None:
        proc = self._owned.pop(pid, None)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            return
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    # --- teardown ----------------------------------------------------------------------------

    def _thaw(self) -> None:
        """A frozen process cannot die: thaw every cgroup made here before killing."""
        for path in self._created:
            for name in ("freezer.state", "cgroup.freeze"):
                target = path / name
                if target.exists():
                    with contextlib.suppress(OSError):
                        target.write_text("THAWED" if name == "freezer.state" else "0")

    def _ours(self, path: Path) -> bool:
        """Inside the tree's own root (not a parent shared with other users)."""
        return any(
            path == m / self.root or m / self.root in path.parents for m in self.mounts.values()
        )

    def _rmdir(self, path: Path) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as err:
                # A shared parent still in use by others stays; a task that is dying may
                # hold one of ours for a moment.
                if not self._ours(path) and err.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    return
                if time.monotonic() > deadline:
                    log.warning("remove %s: %s", path, err.strerror)
                    return
                time.sleep(0.02)

    def _remove_below(self, cgroup: str, *, including: bool) -> None:
        """rmdir everything under `cgroup` in every hierarchy, deepest first."""
        for mount in self.mounts.values():
            top = mount / cgroup
            if not top.is_dir():
                continue
            dirs = [Path(d) for d, _, _ in os.walk(top)]
            for path in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                if path != top or including:
                    self._rmdir(path)

    def close(self) -> None:
        """Thaw, kill owned processes, remove the tree and the parents made for it."""
        if not self._open:
            return
        self._open = False
        try:
            self._thaw()
            for pid in list(self._owned):
                self._kill(pid)
            self._remove_below(self.root, including=False)
        finally:
            for path in reversed(self._created):
                self._rmdir(path)
            self._created.clear()
            self.cgroups.close()
