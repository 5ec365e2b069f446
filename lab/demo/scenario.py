"""The demo's node: a kubelet-like cgroup tree with one online pod and a few batch pods.

    kubepods (memory limit: the node's memory)
     ├── burstable/pod<shop/web>/app     the latency probe: a request every 2 ms, ~half a
     │                                   core in bursts (asks for 500m CPU, 64Mi)
     └── besteffort/pod<jobs/crunch-N>   one CPU hog per CPU (BestEffort)
                   /pod<jobs/fill>       a memory hog growing to `MEMORY_HOG_MIB`

Each workload is spawned behind its gate and moved into its container's cgroups before it
does any work; the gates are opened phase by phase (`start_online`, `start_batch`).
`close()` stops every workload (SIGTERM, then SIGKILL), reaps it, and removes the tree.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path

from isolation.errors import IsolationError
from isolation.layout import Driver, Runtime
from isolation.readings import CONTAINER_TICK
from lab.errors import DemoError, WorkloadError
from lab.kubelet_tree import KubeletTree
from lab.workloads import WorkloadProcess, stop_all
from qos.k8s_qos import QOSClass
from qos.pod import Container, Pod, Resources

__all__ = ["MEMORY_HOG_MIB", "NODE_MEMORY_BYTES", "DemoNode"]

MIB = 1 << 20
NODE_MEMORY_BYTES = 2048 * MIB
MEMORY_HOG_MIB = 384
MEMORY_HOG_RATE_MIB_S = 64
ONLINE_CPU = Decimal("0.5")
ONLINE_MEMORY = Decimal(64 * MIB)
PROBE_PERIOD_MS = 2.0
PROBE_WORK_US = 1000.0
START_TIMEOUT_S = 20.0


def _online_pod() -> Pod:
    resources = Resources({"cpu": ONLINE_CPU, "memory": ONLINE_MEMORY})
    return Pod("shop", "web", containers=(Container("app", resources),))


def _batch_pod(name: str) -> Pod:
    return Pod("jobs", name, containers=(Container("main"),))


class DemoNode:
    def __init__(self, workdir: Path, iterations_per_ms: float, cpus: int) -> None:
        self.workdir = workdir
        self.iterations_per_ms = iterations_per_ms
        self.cpus = cpus
        self.tree: KubeletTree | None = None
        self.online: Pod | None = None
        self.batch: list[Pod] = []
        self.probe: WorkloadProcess | None = None
        self.hogs: list[WorkloadProcess] = []
        self.filler: WorkloadProcess | None = None
        self._procs: list[WorkloadProcess] = []  # every workload spawned, to stop at the end

    # --- building ------------------------------------------------------------------------

    def build(self) -> KubeletTree:
        """The tree with its pods, and every workload spawned behind its closed gate."""
        try:
            tree = KubeletTree(Driver.CGROUPFS, Runtime.CONTAINERD, node_cpus=self.cpus)
            self.tree = tree
            tree.open()
            tree.cgroups.write("memory.max", tree.layout.kubepods(), NODE_MEMORY_BYTES)
            self.online = tree.add_pod(_online_pod())
            names = [f"crunch-{i}" for i in range(self.cpus)] + ["fill"]
            self.batch = [tree.add_pod(_batch_pod(n)) for n in names]
        except (IsolationError, OSError) as err:
            raise DemoError(f"build the demo's cgroup tree: {_why(err)}") from err
        probe_args = (
            f"--period-ms={PROBE_PERIOD_MS}",
            f"--work-us={PROBE_WORK_US}",
            f"--iterations-per-ms={self.iterations_per_ms}",
        )
        self.probe = self._spawn("probe", "latency_probe", probe_args, self.online, True)
        self.hogs = [
            self._spawn(p.name, "cpu_hog", ("--report-every=0.25",), p, False)
            for p in self.batch[:-1]
        ]
        filler_args = (f"--rate-mib-s={MEMORY_HOG_RATE_MIB_S}", f"--target-mib={MEMORY_HOG_MIB}")
        self.filler = self._spawn("fill", "memory_hog", filler_args, self.batch[-1], False)
        return tree

    def _spawn(
        self, name: str, module: str, args: tuple[str, ...], pod: Pod, samples: bool
    ) -> WorkloadProcess:
        assert self.tree is not None
        proc = WorkloadProcess.spawn(name, module, args, self.workdir, samples=samples)
        self._procs.append(proc)
        container = pod.containers[0].name
        try:
            self.tree.attach(proc.pid, self.tree.container_cgroup(pod, container), own=False)
        except OSError as err:
            raise DemoError(f"move workload {name} into its pod's cgroups: {_why(err)}") from err
        return proc

    @property
    def pods(self) -> list[Pod]:
        return [p for p in (self.online, *self.batch) if p is not None]

    @property
    def workloads(self) -> list[WorkloadProcess]:
        return list(self._procs)

    # --- phases --------------------------------------------------------------------------

    def start_online(self) -> None:
        assert self.probe is not None
        self._start([self.probe])

    def start_batch(self) -> None:
        assert self.filler is not None
        self._start([*self.hogs, self.filler])

    @staticmethod
    def _start(procs: list[WorkloadProcess]) -> None:
        try:
            for p in procs:
                p.open_gate()
            for p in procs:
                p.wait_started(START_TIMEOUT_S)
        except WorkloadError as err:
            raise DemoError(str(err)) from err

    # --- readings ------------------------------------------------------------------------

    def cpu_seconds(self, cgroup: str) -> float | None:
        """CPU time used below `cgroup` ('' = the whole machine); None if unreadable."""
        assert self.tree is not None
        with contextlib.suppress(IsolationError, OSError):
            sample = self.tree.cgroups.sample(cgroup, CONTAINER_TICK)
            if sample is not None and sample.cpu.usage_ns is not None:
                return sample.cpu.usage_ns / 1e9
        return None

    @property
    def besteffort(self) -> str:
        assert self.tree is not None
        return self.tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)

    # --- teardown ------------------------------------------------------------------------

    def poll(self) -> None:
        for p in self._procs:
            p.poll()

    def stop_workloads(self) -> dict[str, int]:
        return stop_all(self._procs)

    def close(self) -> None:
        try:
            self.stop_workloads()
        finally:
            if self.tree is not None:
                self.tree.close()

    def __enter__(self) -> DemoNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    return str(err)
