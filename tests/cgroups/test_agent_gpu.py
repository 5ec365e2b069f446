"""GPUs in the running loop, on real cgroups with the NVML double (tests/fake_nvml.py).

The double reports the PIDs of real `sleep` processes started in a kubelet-like tree's
containers (lab.kubelet_tree), so the GPU-to-pod mapping reads the real /proc/<pid>/cgroup,
environ and (v1) devices.list, and freezes go through the real freezer (v1 freezer.state,
v2 cgroup.freeze). Without a double, `GpuSource.open` uses the real pynvml (absent here).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from agent.loop import Loop
from agent.observe.gpus import GpuSource
from agent.report.metrics import AgentMetrics
from agent.report.status import read_status
from isolation.cgroups import Cgroups
from isolation.detect import Hierarchy
from isolation.layout import Driver
from lab.kubelet_tree import KubeletTree
from qos.pod import BATCH_CPU, Container, Pod, Resources
from qos.settings import QosSettings
from qos.state import NodeCapacity
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.tree_loop import tree_loop

GIB = 1 << 30
SLEEP = ("sleep", "600")


def web() -> Pod:
    res = Resources({"cpu": Decimal("0.5"), "memory": Decimal(GIB)}, {"cpu": Decimal(1)})
    return Pod("shop", "web", containers=(Container("app", res),))


def job(name: str) -> Pod:
    return Pod("jobs", name, containers=(Container("train", Resources({BATCH_CPU: Decimal(500)})),))


@dataclass
class GpuNode:
    tree: KubeletTree
    pods_dir: Path
    state: Path
    pods: dict[str, Pod] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    events: list[tuple[str, bool, str, str]] = field(default_factory=list)
    evicted: list[Any] = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def add(self, pod: Pod, env: dict[str, str] | None = None) -> int:
        built = self.tree.add_pod(pod)
        container = built.containers[0].name
        proc = self.tree.spawn(built, container, SLEEP, env={**os.environ, **(env or {})})
        self.tree.write_manifest(built, self.pods_dir)
        self.pods[pod.name] = built
        self.pids[pod.name] = proc.pid
        return proc.pid

    def cgroup(self, name: str) -> str:
        return self.tree.pod_cgroup(self.pods[name])

    def frozen(self, name: str) -> bool:
        return self.tree.cgroups.read("freeze", self.cgroup(name)).value

    def loop(self, nvml: FakeNvml, **gpu: Any) -> Loop:
        cgroups = Cgroups(self.tree.hierarchy)
        return tree_loop(
            self.tree,
            self.pods_dir,
            self.state,
            QosSettings.model_validate({"cpu": {"mechanism": "cpuset"}, "gpu": gpu}),
            NodeCapacity(2000, 4 * GIB),
            node_name="gpu-node",
            metrics=AgentMetrics(self.registry),
            evict=lambda e, pod: self.evicted.append(e),
            event=lambda pod, warn, reason, msg: self.events.append((pod.key, warn, reason, msg)),
            gpus=GpuSource.open(cgroups, nvml),
        )

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def gpu_node(hierarchy: Hierarchy, tmp_path: Path) -> Iterator[GpuNode]:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        pods_dir = tmp_path / "pods"
        pods_dir.mkdir()
        yield GpuNode(tree, pods_dir, tmp_path / "state")


def tick(loop: Loop) -> Any:
    result = loop.tick()
    assert result is not None
    assert result.report is not None and not result.report.failed, result.report.failed
    return result


@pytest.mark.cgroup_v1
@pytest.mark.parametrize(
    "nvml",
    [FakeNvml([]), FakeNvml([FakeGpu()], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), None],
    ids=["no-devices", "no-driver", "real-pynvml"],
)
def test_no_gpu_is_absent_everywhere_never_zero(gpu_node: GpuNode, nvml: FakeNvml | None) -> None:
    gpu_node.add(web())
    gpu_node.add(job("train"))
    loop = gpu_node.loop(nvml)
    if nvml is None:  # no double: the real pynvml, which finds no NVIDIA library here
        assert loop.gpus is None
    assert loop.gpus is None
    result = tick(loop)
    assert result.plan.budgets.gpu is None and result.plan.gpu is None
    assert "colocd.io/batch-gpu" not in [e.name for e in result.plan.extended_resources]
    status = read_status(gpu_node.state)
    assert status.gpu is None
    assert [b.resource for b in status.budgets] == ["cpu", "memory"]
    assert gpu_node.metric("colocd_budget_batch_gpu_devices") is None
    assert gpu_node.metric("colocd_gpu_devices") is None
    assert gpu_node.metric("colocd_node_published_batch_gpu_devices") is None
    loop.close()


@pytest.mark.cgroup_v1
def test_two_gpus_map_processes_to_pods_and_budget_each_device(gpu_node: GpuNode) -> None:
    online = gpu_node.add(web())
    batch = gpu_node.add(job("train"))
    other = gpu_node.add(job("infer"))
    host = os.getpid()  # a process no pod claims: counted as online (protected)
    nvml = FakeNvml(
        [
            FakeGpu(
                uuid="GPU-0",
                sm_percent=50,
                memory_used=30 * GIB,
                compute=[(online, 20 * GIB), (batch, 10 * GIB)],
                samples=[(online, 100, 30), (batch, 100, 20)],
            ),
            FakeGpu(uuid="GPU-1", sm_percent=10, memory_used=5 * GIB, compute=[(other, 5 * GIB)]),
            FakeGpu(uuid="GPU-2", sm_percent=0, graphics=[(host, GIB)], memory_used=GIB),
        ]
    )
    loop = gpu_node.loop(nvml)
    result = tick(loop)
    obs = result.gpu
    where = {(u.gpu, u.pid): (u.pod, u.container, u.tier) for u in obs.users}
    assert where[(0, online)] == ("shop/web", "app", "online")
    assert where[(0, batch)] == ("jobs/train", "train", "batch")
    assert where[(1, other)] == ("jobs/infer", "train", "batch")
    assert where[(2, host)] == (None, None, None)
    dev = {d.index: d for d in obs.reading.per_device}
    assert (dev[0].online_percent, dev[0].batch_percent) == (30.0, 20.0)
    assert (dev[0].online_memory_bytes, dev[0].batch_memory_bytes) == (20 * GIB, 10 * GIB)
    assert dev[1].online_percent == 0.0 and dev[1].batch_percent == 10.0
    assert dev[2].online_memory_bytes == GIB  # the host process is protected
    plan = result.plan
    shares = {d.index: d.amount for d in plan.gpu.devices}
    # 100 x 0.9 - online 30 - margin 10 (reserve floor) = 50 on GPU 0; 80 where online is
    # idle. Memory caps: GPU 0 80Gi x (0.9 - 0.1) - 20Gi online = 44Gi (55 %, above 50);
    # GPU 2 64Gi - the host's 1Gi = 63Gi = 78.75 %, so 78.
    assert shares == {0: 50, 1: 80, 2: 78}
    assert plan.budgets.gpu.amount == 208
    assert "colocd.io/batch-gpu 208" in plan.budgets.gpu.reason
    assert "capped at 79% by GPU memory" in plan.gpu.devices[2].reason
    assert not plan.gpu.frozen and not obs.mismatches
    status = read_status(gpu_node.state)
    assert status.gpu is not None and [d.offered for d in status.gpu.devices] == [50, 80, 78]
    assert any(f"pid {batch} of jobs/train/train (batch)" in p for p in status.gpu.processes)
    assert gpu_node.metric("colocd_budget_batch_gpu_devices") == 2.08
    assert gpu_node.metric("colocd_gpu_devices") == 3
    assert gpu_node.metric("colocd_gpu_used_devices", gpu="0", tier="online") == 0.3
    assert gpu_node.metric("colocd_gpu_offered_devices", gpu="1") == 0.8
    assert gpu_node.metric("colocd_gpu_memory_used_bytes", gpu="0", tier="batch") == 10 * GIB
    loop.close()


@pytest.mark.cgroup_v1
def test_a_process_on_a_gpu_its_container_was_not_given_is_reported(gpu_node: GpuNode) -> None:
    visible = gpu_node.add(job("wrong-env"), env={"NVIDIA_VISIBLE_DEVICES": "GPU-1"})
    denied = gpu_node.add(job("denied"))
    fine = gpu_node.add(job("fine"), env={"NVIDIA_VISIBLE_DEVICES": "0"})
    pod = gpu_node.pods["denied"]
    devices = gpu_node.tree.hierarchy.v1["devices"]
    container = gpu_node.tree.container_cgroup(pod, pod.containers[0].name)
    # As runc does: deny everything, then allow what the container was given (GPU 1 only).
    (devices / container / "devices.deny").write_text("a")
    (devices / container / "devices.allow").write_text("c 195:1 rwm")
    nvml = FakeNvml(
        [
            FakeGpu(uuid="GPU-0", compute=[(visible, GIB), (denied, GIB), (fine, GIB)]),
            FakeGpu(uuid="GPU-1"),
        ]
    )
    loop = gpu_node.loop(nvml)
    result = tick(loop)
    found = {(m.user.pod, m.check) for m in result.gpu.mismatches}
    assert found == {("jobs/wrong-env", "visible_devices"), ("jobs/denied", "device_cgroup")}
    lines = read_status(gpu_node.state).gpu.mismatches
    assert any("jobs/wrong-env" in x and "NVIDIA_VISIBLE_DEVICES is 'GPU-1'" in x for x in lines)
    assert any("jobs/denied" in x and "denies /dev/nvidia0" in x for x in lines)
    assert gpu_node.metric("colocd_mapping_mismatches", check="visible_devices") == 1
    assert gpu_node.metric("colocd_mapping_mismatches", check="device_cgroup") == 1
    assert gpu_node.metric("colocd_mapping_mismatches", check="device_node") == 0
    reasons = {(key, reason) for key, _, reason, _ in gpu_node.events}
    assert reasons == {
        ("jobs/wrong-env", "GpuMappingMismatch"),
        ("jobs/denied", "GpuMappingMismatch"),
    }
    loop.close()


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2
def test_an_online_surge_freezes_batch_on_that_gpu_and_thaws_with_hysteresis(
    gpu_node: GpuNode,
) -> None:
    online = gpu_node.add(web())
    batch = gpu_node.add(job("train"))
    elsewhere = gpu_node.add(job("infer"))
    gpu0 = FakeGpu(uuid="GPU-0", sm_percent=20, compute=[(online, GIB), (batch, GIB)])
    gpu1 = FakeGpu(uuid="GPU-1", sm_percent=30, compute=[(elsewhere, GIB)])
    loop = gpu_node.loop(FakeNvml([gpu0, gpu1]), thaw_after_seconds=0.3)
    tick(loop)
    assert not gpu_node.frozen("train")

    gpu0.sm_percent = 95  # online surges (the split is not reported: all counted online)
    result = tick(loop)
    (frozen,) = result.plan.gpu.frozen
    assert frozen.pod == "jobs/train" and frozen.new
    assert "GPU 0 online SM 95% >= 80%" in frozen.reason
    assert gpu_node.frozen("train")
    assert not gpu_node.frozen("infer")  # its GPU is calm
    assert not gpu_node.frozen("web")  # online is never frozen
    assert result.plan.gpu.devices[0].amount == 0
    assert ("jobs/train", True, "GpuFrozen", frozen.reason) in gpu_node.events
    assert gpu_node.metric("colocd_freezer_frozen_pods") == 1
    assert gpu_node.metric("colocd_freezer_freezes_total") == 1

    gpu0.sm_percent = 70  # below 80 but not below 80 - 20: inside the hysteresis band
    tick(loop)
    time.sleep(0.4)
    tick(loop)
    assert gpu_node.frozen("train")

    gpu0.sm_percent = 10  # calm, and it must stay calm for thaw_after_seconds
    result = tick(loop)
    assert gpu_node.frozen("train") and not result.plan.gpu.thawed
    time.sleep(0.4)
    result = tick(loop)
    (thawed,) = result.plan.gpu.thawed
    assert thawed.pod == "jobs/train" and "below 60%" in thawed.reason
    assert not gpu_node.frozen("train")
    assert gpu_node.metric("colocd_freezer_thaws_total") == 1
    assert any(r == "GpuThawed" for _, _, r, _ in gpu_node.events)
    loop.close()


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2
def test_a_freeze_that_outlasts_its_limit_ends_in_an_eviction(gpu_node: GpuNode) -> None:
    online = gpu_node.add(web())
    batch = gpu_node.add(job("train"))
    gpu = FakeGpu(uuid="GPU-0", sm_percent=99, compute=[(online, GIB), (batch, GIB)])
    loop = gpu_node.loop(FakeNvml([gpu]), max_frozen_seconds=0.5)
    result = tick(loop)
    assert gpu_node.frozen("train") and not result.plan.evictions
    time.sleep(0.6)
    result = tick(loop)
    (eviction,) = result.plan.evictions
    assert eviction.pod == "jobs/train"
    assert "frozen on the GPU for" in eviction.reason and "limit 0.5s" in eviction.reason
    assert [e.pod for e in gpu_node.evicted] == ["jobs/train"]
    assert result.plan.gpu.evictions == (("jobs/train", "frozen_too_long"),)
    assert gpu_node.metric("colocd_freezer_evictions_total", reason="frozen_too_long") == 1
    assert tick(loop).plan.evictions == ()  # once per pod
    loop.close()
    assert not gpu_node.frozen("train")  # revert on exit thaws what colocd froze


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2
def test_a_pod_frozen_when_the_agent_crashed_is_thawed_by_the_next_one(gpu_node: GpuNode) -> None:
    """The first agent dies (no close, nothing reverted) with a batch pod frozen; the next one
    starts with an empty brain, finds the freeze in the journal, and thaws the pod once its
    GPU is calm. Only what the journal holds is touched: a pod frozen by someone else stays."""
    online = gpu_node.add(web())
    batch = gpu_node.add(job("train"))
    gpu_node.add(job("infer"))
    gpu = FakeGpu(uuid="GPU-0", sm_percent=95, compute=[(online, GIB), (batch, GIB)])
    crashed = gpu_node.loop(FakeNvml([gpu]))
    tick(crashed)
    assert gpu_node.frozen("train")
    other = gpu_node.cgroup("infer")
    gpu_node.tree.cgroups.write("freeze", other, True)  # not colocd's doing
    try:
        gpu.sm_percent = 10
        gpu_node.registry = CollectorRegistry()  # a new process: new metrics
        restarted = gpu_node.loop(FakeNvml([gpu]))
        result = tick(restarted)
        assert not gpu_node.frozen("train")
        assert result.plan.gpu.frozen == ()
        assert gpu_node.frozen("infer")
        tick(restarted)
        assert not gpu_node.frozen("train")
        restarted.close()
    finally:
        gpu_node.tree.cgroups.write("freeze", other, False)


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2
def test_a_restart_keeps_the_surge_and_its_frozen_pod_from_the_history(gpu_node: GpuNode) -> None:
    """The agent dies during a surge, after its history was saved. The next one restores the
    surge: online at 70 % is inside the hysteresis band, so the pod stays frozen (a new agent
    with no surge would thaw it), and it thaws once online has been calm for thawAfter."""
    online = gpu_node.add(web())
    batch = gpu_node.add(job("train"))
    gpu = FakeGpu(uuid="GPU-0", sm_percent=95, compute=[(online, GIB), (batch, GIB)])
    crashed = gpu_node.loop(FakeNvml([gpu]), thaw_after_seconds=0.3)
    tick(crashed)
    crashed._save_history()  # what its once-a-minute timer does
    assert gpu_node.frozen("train")
    gpu.sm_percent = 70
    gpu_node.registry = CollectorRegistry()
    restarted = gpu_node.loop(FakeNvml([gpu]), thaw_after_seconds=0.3)
    result = tick(restarted)
    (kept,) = result.plan.gpu.frozen
    assert kept.pod == "jobs/train" and not kept.new and "SM 95% >= 80%" in kept.reason
    assert gpu_node.frozen("train")
    gpu.sm_percent = 10
    tick(restarted)
    time.sleep(0.4)
    result = tick(restarted)
    assert [t.pod for t in result.plan.gpu.thawed] == ["jobs/train"]
    assert not gpu_node.frozen("train")
    restarted.close()


@pytest.mark.cgroup_v1
def test_gpu_memory_online_would_lack_evicts_the_batch_pod_holding_it(gpu_node: GpuNode) -> None:
    online = gpu_node.add(web())
    batch = gpu_node.add(job("train"))
    gpu = FakeGpu(
        uuid="GPU-0",
        sm_percent=10,
        memory_total=80 * GIB,
        memory_used=75 * GIB,
        compute=[(online, 50 * GIB), (batch, 25 * GIB)],
    )
    loop = gpu_node.loop(FakeNvml([gpu]))
    result = tick(loop)
    (eviction,) = result.plan.evictions
    assert eviction.pod == "jobs/train" and "GPU 0 memory: online peak 50.00Gi" in eviction.reason
    assert result.plan.gpu.evictions == (("jobs/train", "gpu_memory"),)
    loop.close()


@pytest.mark.cgroup_v1
@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_TIMEOUT], ids=["lost", "timeout"]
)
def test_an_nvml_error_on_one_gpu_does_not_fail_the_tick(gpu_node: GpuNode, code: int) -> None:
    batch = gpu_node.add(job("train"))
    good = FakeGpu(uuid="GPU-0", sm_percent=20, compute=[(batch, GIB)])
    bad = FakeGpu(uuid="GPU-1", fail={"nvmlDeviceGetMemoryInfo": code})
    unsupported = FakeGpu(
        uuid="GPU-2", fail={"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED}
    )
    loop = gpu_node.loop(FakeNvml([good, bad, unsupported]))
    result = tick(loop)
    shares = {d.index: d for d in result.plan.gpu.devices}
    assert shares[0].amount == 80
    assert shares[1].amount == 0 and "read memory GPU 1" in shares[1].reason
    # NOT_SUPPORTED is a missing value, not an error: its use is unknown, nothing offered.
    assert shares[2].amount == 0 and "never read" in shares[2].reason
    status = read_status(gpu_node.state)
    assert status.gpu.devices[1].error is not None and "GPU 1" in status.gpu.devices[1].error
    assert status.gpu.devices[0].error is None
    assert gpu_node.metric("colocd_nvml_errors_total", gpu="1") == 1
    # What GPU 1 could not report has no series at all; GPU 0's are there.
    assert gpu_node.metric("colocd_gpu_used_devices", gpu="1", tier="online") is None
    assert gpu_node.metric("colocd_gpu_memory_total_bytes", gpu="1") is None
    assert gpu_node.metric("colocd_gpu_used_devices", gpu="0", tier="batch") == 0.2
    assert gpu_node.metric("colocd_gpu_offered_devices", gpu="1") == 0
    assert result.plan.budgets.gpu.amount == 80
    loop.close()
