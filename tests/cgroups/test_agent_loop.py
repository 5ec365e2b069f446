"""The tick loop on real cgroups: one tick writes what the plan says and revert undoes it
(v1 on the host, v2 in the VM, under both kubelet drivers' naming); kubelet's periodic QoS
rewrite succeeds while colocd holds batch back; vanished pods and a vanished pod source fail
towards online; per-pod settings colocd no longer wants go back to their originals.

The loop runs in this process against a kubelet-like tree (lab.kubelet_tree) whose root
is the node cgroup, so other work on this shared machine does not count as node use. The
CPUs are the machine's (kubepods' cpuset, or this process's affinity), never assumed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentSettings, Settings
from agent.loop import Loop
from agent.observe.topology import locate
from agent.report.status import read_status
from agent.sources.pod_source import DirPodSource, PodSource
from isolation.cgroups import Cgroups
from isolation.detect import Hierarchy, Mode
from isolation.executor import Executor, Outcome
from isolation.journal import Journal
from isolation.knobs import CpuMax, format_cpuset, parse_cpuset
from isolation.layout import Driver, Runtime
from isolation.readings import POD_TICK
from isolation.settings import IsolationSettings
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.plan import CpusetCap, QuotaCap
from qos.pod import BATCH_CPU, TIER_ANNOTATION, Container, Pod, Resources
from qos.settings import QosSettings
from qos.state import NodeCapacity
from tests.tree_loop import tree_loop

pytestmark = pytest.mark.cgroup_v1

GIB = 1 << 30
MIB = 1 << 20
# The CPUs pods may use here: the machine's, not an assumed count.
ALL = frozenset(os.sched_getaffinity(0))


def web() -> Pod:
    res = Resources({"cpu": Decimal("0.5"), "memory": Decimal(GIB)}, {"cpu": Decimal(1)})
    return Pod("shop", "web", containers=(Container("app", res),))


def job(name: str = "job", annotations: dict[str, str] | None = None, **res: Any) -> Pod:
    requests = res or {BATCH_CPU: Decimal(500)}
    return Pod(
        "jobs",
        name,
        annotations=annotations or {},
        containers=(Container("loop", Resources(requests)),),
    )


def dedicated_db() -> Pod:
    """A Guaranteed pod with one whole CPU, annotated dedicated."""
    whole = Resources(
        {"cpu": Decimal(1), "memory": Decimal(GIB)}, {"cpu": Decimal(1), "memory": Decimal(GIB)}
    )
    annotations = {TIER_ANNOTATION: "dedicated"}
    return Pod("shop", "db", annotations=annotations, containers=(Container("c", whole),))


@dataclass
class Node:
    tree: KubeletTree
    pods_dir: Path
    state: Path
    pods: dict[str, Pod]

    def add(self, pod: Pod, *, busy: int = 0) -> Pod:
        built = self.tree.add_pod(pod)
        for _ in range(busy):
            self.tree.spawn(built, built.containers[0].name, BUSY_LOOP)
        self.tree.write_manifest(built, self.pods_dir)
        self.pods[pod.name] = built
        return built

    def read(self, knob: str, pod: str | None = None, container: bool = False) -> Any:
        """`knob` of a pod (or its first container), of besteffort (no pod), or of a QoS
        level or kubepods named by `pod` ("burstable", "kubepods")."""
        tree = self.tree
        levels = {
            None: tree.layout.qos_cgroup(QOSClass.BEST_EFFORT),
            "burstable": tree.layout.qos_cgroup(QOSClass.BURSTABLE),
            "kubepods": tree.layout.kubepods(),
        }
        if pod in levels:
            cgroup = levels[pod]
        elif container:
            p = self.pods[pod]
            cgroup = tree.container_cgroup(p, p.containers[0].name)
        else:
            cgroup = tree.pod_cgroup(self.pods[pod])
        if knob == "cpuset.cpus" and tree.hierarchy.mode is Mode.V2:
            # v2: what the cgroup may run on (an empty cpuset.cpus inherits its parent's).
            assert tree.hierarchy.unified is not None
            return parse_cpuset(
                (tree.hierarchy.unified / cgroup / "cpuset.cpus.effective").read_text()
            )
        return tree.cgroups.read(knob, cgroup).value

    def loop(
        self,
        *,
        qos: dict[str, Any] | None = None,
        policy: Callable[[], QosSettings] | None = None,
        cpu_milli: int = len(ALL) * 1000,
        source: PodSource | None = None,
        wall: Callable[[], float] = time.time,
        **agent: Any,
    ) -> Loop:
        """A loop over this tree; batch is capped by cpuset unless `qos` (or the settings
        `policy` gives each tick) says otherwise."""
        return tree_loop(
            self.tree,
            self.pods_dir,
            self.state,
            QosSettings.model_validate({"cpu": {"mechanism": "cpuset"}, **(qos or {})}),
            NodeCapacity(cpu_milli, 4 * GIB),
            agent=agent,
            source=source or DirPodSource(self.pods_dir),
            qos=policy,
            wall=wall,
        )


def _node(tree: KubeletTree, tmp_path: Path) -> Node:
    pods_dir = tmp_path / "pods"
    pods_dir.mkdir()
    return Node(tree, pods_dir, tmp_path / "state", {})


def node_in(hierarchy: Hierarchy, tmp_path: Path) -> Iterator[Node]:
    """A Node over a fresh kubelet-like tree, removed afterwards (the `node` fixtures)."""
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        yield _node(tree, tmp_path)


@pytest.fixture(
    params=[(Driver.CGROUPFS, Runtime.CONTAINERD), (Driver.SYSTEMD, Runtime.CONTAINERD)],
    ids=["cgroupfs", "systemd"],
)
def any_node(
    request: pytest.FixtureRequest, hierarchy: Hierarchy, tmp_path: Path
) -> Iterator[Node]:
    """A node under either kubelet driver: `kubepods/burstable/pod<uid>/<id>` or
    `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
    cri-containerd-<id>.scope`."""
    with KubeletTree(*request.param, hierarchy=hierarchy) as tree:
        yield _node(tree, tmp_path)


@pytest.fixture
def node(hierarchy: Hierarchy, tmp_path: Path) -> Iterator[Node]:
    yield from node_in(hierarchy, tmp_path)


def first_tick(loop: Loop) -> Any:
    loop.prime()
    time.sleep(0.2)
    result = loop.tick()
    assert result is not None
    return result


@pytest.mark.cgroup_v2
def test_one_tick_applies_the_plan_and_revert_restores_every_original(any_node: Node) -> None:
    node = any_node
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    keys = [
        ("cpu.idle", None, False),
        ("cpu.shares", None, False),
        ("cpuset.cpus", None, False),
        ("cpu.idle", "job", False),
        ("cpu.shares", "job", False),
        ("cpuset.cpus", "job", True),
        ("cpu.max", "job", False),
        ("cpu.max", "web", False),
        ("cpuset.cpus", "web", False),
    ]
    v2 = node.tree.hierarchy.mode is Mode.V2
    if v2:
        keys += [
            (k, p, False)
            for k in ("memory.min", "memory.low")
            for p in ("web", "burstable", "kubepods")
        ]
    before = {key: node.read(*key) for key in keys}
    loop = node.loop()
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report
    plan = result.plan
    cap = plan.batch_tier.cpu_cap
    # SCHED_IDLE on the batch pod itself; besteffort keeps kubelet's weight (see the rewrite test).
    assert node.read("cpu.idle", "job") is True
    assert (
        node.read("cpu.idle") is False
        and node.read("cpu.shares") == before[("cpu.shares", None, False)]
    )
    assert node.read("cpuset.cpus") == frozenset(cap.cpus)
    # v1 cpusets: the whole subtree below besteffort follows (a child must fit its parent).
    assert node.read("cpuset.cpus", "job", container=True) == frozenset(cap.cpus)
    # The batch pod's own limit from its colocd.io/batch-cpu request of 500m.
    assert node.read("cpu.max", "job") == CpuMax(50_000, 100_000)
    # The online pod is left exactly as kubelet made it.
    assert node.read("cpu.max", "web") == before[("cpu.max", "web", False)]
    assert node.read("cpuset.cpus", "web") == before[("cpuset.cpus", "web", False)]
    if v2:
        # Protection the kernel honours: every ancestor carries at least the pod's (1 GiB
        # request: min 512 MiB, low 1 GiB; kubelet's MemoryQoS would put 1 GiB on both).
        assert (node.read("memory.min", "web"), node.read("memory.low", "web")) == (GIB // 2, GIB)
        for level in ("burstable", "kubepods"):
            assert node.read("memory.min", level) == node.read("memory.low", level) == GIB
    status = read_status(node.state)
    assert status.ticks == 1 and status.pods["online"] == 1 and status.pods["batch"] == 1
    cpu = status.budgets[0]
    assert cpu.name == "colocd.io/batch-cpu" and cpu.amount == plan.budgets.cpu.amount
    assert cpu.reason.startswith("colocd.io/batch-cpu") and "online" in cpu.reason
    assert status.apply.counts["applied"] >= 4

    reverted = loop.close()
    assert reverted is not None and not reverted.failed
    after = {key: node.read(*key) for key in before}
    assert after == before


@pytest.mark.cgroup_v2
def test_kubelets_qos_rewrite_succeeds_while_colocd_holds_batch_back(any_node: Node) -> None:
    """kubelet rewrites kubepods, burstable and besteffort every minute (weights; memory.min
    with MemoryQoS). cpu.idle on besteffort made the kernel refuse those writes; on the batch
    pods it does not, and the rewrite leaves batch where colocd holds it."""
    node = any_node
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    be = node.tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
    # The test can fail: idle on the QoS level makes kubelet's very writes fail.
    node.tree.cgroups.write("cpu.idle", be, True)
    refused = node.tree.kubelet_qos_update()
    assert [(e.cgroup, e.file) for e in refused] == [
        (be, "cpu.weight" if node.tree.hierarchy.mode is Mode.V2 else "cpu.shares")
    ], refused
    node.tree.cgroups.write("cpu.idle", be, False)
    assert node.tree.kubelet_qos_update() == []  # kubelet puts besteffort's weight back

    loop = node.loop()
    first = first_tick(loop)
    assert first.report is not None and not first.report.failed, first.report.failed
    v2 = node.tree.hierarchy.mode is Mode.V2

    def batch_memory(result: Any) -> int:
        """besteffort's memory.max as the tick planned it (v1: at the budget, memory.high's)."""
        limits = result.plan.batch_tier.memory
        return (limits.max_bytes if v2 else limits.high_bytes) // 4096 * 4096

    def batch_held() -> dict[str, Any]:
        return {
            "idle": node.read("cpu.idle", "job"),
            "cpus": node.read("cpuset.cpus"),
            "quota": node.read("cpu.max", "job"),
            "memory": node.read("memory.max"),
        }

    held = batch_held()
    assert held["idle"] is True and held["cpus"] == frozenset(first.plan.batch_tier.cpu_cap.cpus)
    assert held["memory"] == batch_memory(first)
    for memory_qos in (False, True):
        before = batch_held()
        assert node.tree.kubelet_qos_update(memory_qos=memory_qos) == []
        # kubelet's rewrite itself leaves batch exactly where colocd holds it ...
        assert batch_held() == before
        later = loop.tick()
        assert later is not None and later.report is not None and not later.report.failed
        if memory_qos and v2:
            # kubelet's MemoryQoS figure (web's 1 GiB request) is colocd's: no tug of war.
            assert (
                node.read("memory.min", "burstable") == node.read("memory.min", "kubepods") == GIB
            )
        # ... and so does colocd's next tick (its memory budget follows usage, page by page).
        now = batch_held()
        assert {k: v for k, v in now.items() if k != "memory"} == {
            k: v for k, v in held.items() if k != "memory"
        }
        assert now["memory"] == batch_memory(later)
    loop.close()


def test_the_quota_mechanism_caps_besteffort_and_the_pods_below_fit_under_it(
    node: Node,
) -> None:
    node.add(web(), busy=1)
    node.add(job(), busy=1)  # its own quota from batch-cpu: 500m
    # Little is planned for batch: the tier's quota falls to its 100m floor, below the pod's.
    loop = node.loop(qos={"cpu": {"mechanism": "quota"}, "reclaim": {"cpu_max_fraction": 0.2}})
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report.failed
    cap = result.plan.batch_tier.cpu_cap
    assert isinstance(cap, QuotaCap) and cap.millicores == 100
    assert node.read("cpu.max") == CpuMax(10_000, 100_000)
    # cgroup v1 refuses a parent quota below a child's: the pod's came down to it.
    assert node.read("cpu.max", "job") == CpuMax(10_000, 100_000)
    assert node.read("cpuset.cpus") == ALL
    assert node.read("cpu.idle", "job") is True and node.read("cpu.idle") is False
    loop.close()
    assert node.read("cpu.max") == CpuMax(None, 100_000)
    assert node.read("cpu.max", "job") == CpuMax(None, 100_000)


def test_quotas_brought_under_the_tier_quota_come_back_when_it_rises(node: Node) -> None:
    limited = Resources({"cpu": Decimal("0.2")}, {"cpu": Decimal(1)})
    etl = Pod(
        "jobs", "etl", annotations={TIER_ANNOTATION: "batch"}, containers=(Container("c", limited),)
    )
    node.add(etl, busy=1)  # burstable: kubelet gave its container a 1-CPU quota
    node.add(job())
    assert node.read("cpu.max", "etl", container=True) == CpuMax(100_000, 100_000)
    quota = {"mechanism": "quota"}
    little = QosSettings.model_validate({"cpu": quota, "reclaim": {"cpu_max_fraction": 0.1}})
    plenty = QosSettings.model_validate(
        {
            "cpu": quota,
            "reclaim": {"cpu_max_fraction": 1.0},
            "margin": {"min_fraction": 0, "max_fraction": 0, "initial_fraction": 0},
            "predictor": {"cold_start_cpu_fraction": 0},
        }
    )
    settings = [little]
    loop = node.loop(policy=lambda: settings[-1], cpu_milli=4000)
    first = first_tick(loop)
    assert first.report is not None and not first.report.failed, first.report.failed
    # The 100m floor for the tier, split between besteffort and the burstable batch pod.
    assert node.read("cpu.max", "etl") == CpuMax(5_000, 100_000)
    assert node.read("cpu.max", "etl", container=True) == CpuMax(5_000, 100_000)

    settings.append(plenty)
    later = loop.tick()
    assert later is not None and later.report is not None and not later.report.failed
    cap = later.plan.batch_tier.cpu_cap
    assert isinstance(cap, QuotaCap) and cap.millicores >= 2000, cap  # 1 CPU each at least
    assert node.read("cpu.max", "etl") == CpuMax(cap.millicores // 2 * 100, 100_000)
    assert node.read("cpu.max", "etl", container=True) == CpuMax(100_000, 100_000)
    loop.close()


def test_a_batch_pods_own_quota_is_held_within_the_tier_quota(node: Node) -> None:
    """v1 refuses a parent quota below a child's (EINVAL): a batch pod asking for more
    batch-cpu than the tier's quota is given the tier's quota, by the tick and by a fast
    clamp alike."""
    node.add(web(), busy=1)
    node.add(job(**{BATCH_CPU: Decimal(3000)}), busy=1)  # 3 cores: above any tier quota
    loop = node.loop(qos={"cpu": {"mechanism": "quota"}})
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report.failed
    tier = node.read("cpu.max")
    assert tier.quota_us is not None and tier.quota_us < 300_000
    assert node.read("cpu.max", "job") == tier
    clamp = loop.enforcer.cap_writes(QuotaCap(100, "surge"), result.topology, result.topology.cpus)
    assert loop.executor is not None
    report = loop.executor.apply(clamp)
    assert not report.failed, report.failed
    assert node.read("cpu.max") == node.read("cpu.max", "job") == CpuMax(10_000, 100_000)
    loop.close()
    assert node.read("cpu.max") == node.read("cpu.max", "job") == CpuMax(None, 100_000)


def test_by_default_batch_runs_as_cpu_idle_confined_by_cpuset(
    hierarchy: Hierarchy, node: Node
) -> None:
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    settings = Settings(
        isolation=IsolationSettings(state_dir=node.state, kubelet_cgroup_root=node.tree.root),
        agent=AgentSettings(
            node_name="test-node", state_dir=node.state, node_cgroup=node.tree.root
        ),
    )
    cgroups = Cgroups(hierarchy)
    loop = Loop(
        settings,
        source=DirPodSource(node.pods_dir),
        cgroups=cgroups,
        layout=node.tree.layout,
        capacity=NodeCapacity(cpu_milli=len(ALL) * 1000, memory_bytes=8 * GIB),
        executor=Executor.from_settings(cgroups, settings.isolation),
    )
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report.failed
    tier = result.plan.batch_tier
    assert isinstance(tier.cpu_cap, CpusetCap) and tier.cpu_idle is not None
    assert node.read("cpu.idle", "job") is True and node.read("cpu.idle") is False
    # A new node keeps most CPU back for online: batch is kept off some CPUs.
    assert node.read("cpuset.cpus") == frozenset(tier.cpu_cap.cpus)
    assert len(tier.cpu_cap.cpus) < len(ALL) or len(ALL) == 1
    assert node.read("cpu.max") == CpuMax(None, 100_000)
    assert loop.fast is not None and "no CPU cap" not in loop.fast.detail
    loop.close()


CACHE_READER = (
    "import os, sys, time\n"
    "path, size = sys.argv[1], 64 << 20\n"
    "with open(path, 'wb') as f:\n"
    "    f.write(b'x' * size); f.flush(); os.fsync(f.fileno())\n"
    "fd = os.open(path, os.O_RDONLY)\n"
    "os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n"  # charge it here, read once
    "while os.read(fd, 1 << 20): pass\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_online_memory_counts_its_page_cache_and_batch_is_limited_below_it(
    node: Node, tmp_path: Path
) -> None:
    """Pages read once sit on the inactive list, outside the working set: counted there,
    online's cache would be room offered to batch, which would take it by evicting it."""
    online = node.add(web())
    reader = node.tree.spawn(
        online,
        "app",
        [sys.executable, "-c", CACHE_READER, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline() == "ready\n"

    def inactive_cache() -> int:
        """The kernel flushes memory.stat every ~2 s: wait for the cache to show there."""
        pod = node.tree.cgroups.sample(node.tree.pod_cgroup(online), POD_TICK)
        assert pod is not None
        return pod.memory.inactive_file_bytes or 0

    deadline = time.monotonic() + 10
    while inactive_cache() < 48 << 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    node.add(job(), busy=1)
    loop = node.loop()
    result = first_tick(loop)
    pod = node.tree.cgroups.sample(node.tree.pod_cgroup(online), POD_TICK)
    assert pod is not None and pod.memory.working_set_bytes is not None
    assert result.readings is not None
    online_bytes = result.readings.memory.online_memory_bytes
    assert online_bytes is not None and online_bytes >= 64 << 20
    assert pod.memory.working_set_bytes < online_bytes - (32 << 20)  # the cache is inactive
    limits = result.plan.batch_tier.memory
    assert limits is not None and limits.max_bytes is not None and limits.high_bytes is not None
    assert limits.max_bytes <= 4 * GIB - (64 << 20)
    # v1 has no memory.high: the hard limit sits at the budget, below kubepods' limit by the
    # budget's headroom, so batch meets its own limit before kubepods reclaims online's cache.
    assert limits.high_bytes <= 0.9 * 4 * GIB - (64 << 20)
    assert node.read("memory.max") == limits.high_bytes // 4096 * 4096  # the kernel rounds
    assert any("no memory.high here (cgroup v1)" in n for n in result.notes), result.notes
    loop.close()


def test_a_pod_cgroup_that_vanishes_mid_tick_is_counted_not_fatal(node: Node) -> None:
    node.add(web())
    node.add(job(), busy=1)
    node.add(job("other"))
    loop = node.loop()
    first = first_tick(loop)
    topo = locate(first.topology.node, loop.cgroups, node.tree.layout)
    writes = loop.enforcer.writes(first.plan, topo)
    node.tree.remove_pod(node.pods["job"])  # kubelet removes it between two steps
    readings = loop.sampler.sample(topo)
    gone = node.tree.pod_cgroup(node.pods["job"])
    assert readings.vanished == (gone,)
    assert loop.executor is not None
    loop.executor.force_rewrite_s = 0  # read every file again (no cache)
    report = loop.executor.apply(writes)
    assert gone in {r.write.cgroup for r in report.of(Outcome.VANISHED)}
    assert not report.failed, report.failed
    # The next tick finds the pod's cgroup missing and carries on.
    later = loop.tick()
    assert later is not None and later.report is not None and not later.report.failed
    assert any("jobs/job" in m for m in later.topology.missing)
    assert loop.ticks == 2
    # Issue 11: what was cached and journaled for the gone cgroup is dropped, on disk too.
    assert gone not in loop.executor.journal.cgroups()  # type: ignore[union-attr]
    root = str(node.tree.hierarchy.root)
    assert gone not in Journal(node.state, root, 1).cgroups()
    # Everything still known is managed or exists: nothing lingers for the next tick.
    in_use = {w.cgroup for w in writes} | {p.cgroup for p in later.topology.placed}
    assert loop.executor.sweep(in_use) == 0
    loop.close()


def test_a_pod_cgroup_that_outlives_its_pod_is_swept_once_it_goes(node: Node) -> None:
    node.add(web())
    gone = node.add(job(), busy=1)
    node.add(job("other"))
    loop = node.loop()
    first_tick(loop)
    assert loop.executor is not None and loop.executor.journal is not None
    cgroup = node.tree.pod_cgroup(gone)
    assert cgroup in loop.executor.journal.cgroups()
    # The pod leaves the API first; kubelet removes its cgroup a while later.
    (node.pods_dir / f"{gone.namespace}_{gone.name}.json").unlink()
    assert loop.tick() is not None
    assert cgroup in loop.executor.journal.cgroups()  # still there: kept for its revert
    node.tree.remove_pod(gone)
    # The pods placed are the same as last tick's, yet the lingering cgroup is looked at again.
    assert loop.tick() is not None
    assert cgroup not in loop.executor.journal.cgroups()
    root = str(node.tree.hierarchy.root)
    assert cgroup not in Journal(node.state, root, node.tree.cgroups.version).cgroups()
    loop.close()


def test_a_lost_pod_source_keeps_the_last_pods_then_holds_batch_back(node: Node) -> None:
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    loop = node.loop(
        qos={"reclaim": {"stale_after_seconds": 0.3, "degrade_seconds": 0}},
        pods_stale_after_s=0.3,
    )
    healthy = first_tick(loop)
    web_before = (node.read("cpu.max", "web"), node.read("cpuset.cpus", "web"))
    shutil.rmtree(node.pods_dir)

    kept = loop.tick()
    assert kept is not None
    # The last fresh readings (the pods are kept, the readings still fresh) set batch's memory.
    batch_memory = node.read("memory.max")
    assert batch_memory is not None and batch_memory > 0
    assert [d.kind for d in kept.degraded] == ["pod_source"]
    assert "using the last pods" in kept.degraded[0].text
    assert len(kept.topology.placed) == len(healthy.topology.placed) == 2

    time.sleep(0.4)
    withheld = loop.tick()
    assert withheld is not None and withheld.readings is None
    assert "readings withheld" in withheld.degraded[0].text
    time.sleep(0.4)
    last = loop.tick()
    assert last is not None
    cpu = last.plan.budgets.cpu
    assert cpu.degraded and cpu.amount == 0, cpu.reason
    # Batch is held at the floor: one CPU, still SCHED_IDLE ...
    assert len(node.read("cpuset.cpus")) == 1 and node.read("cpu.idle", "job") is True
    # ... and online is never throttled by it.
    assert (node.read("cpu.max", "web"), node.read("cpuset.cpus", "web")) == web_before
    # Issue 11: stale inputs stop new offers but never squeeze batch's memory (v1 wrote
    # memory.limit_in_bytes 0 here, which reclaims all its cache and fails with EBUSY).
    assert last.plan.budgets.memory.amount == 0
    assert node.read("memory.max") == batch_memory
    assert not last.report or not last.report.failed
    status = read_status(node.state)
    assert any("pod source" in d for d in status.degraded)
    # The source back: fresh within 2 ticks, nothing failing.
    node.pods_dir.mkdir()
    for pod in node.pods.values():
        node.tree.write_manifest(pod, node.pods_dir)
    back = [loop.tick(), loop.tick()]
    assert back[-1] is not None and not back[-1].degraded, back[-1].degraded
    assert back[-1].report is not None and not back[-1].report.failed
    loop.close()


def test_an_online_pod_in_besteffort_moves_batch_settings_onto_the_batch_pods(
    node: Node,
) -> None:
    node.add(
        Pod("shop", "probe", annotations={TIER_ANNOTATION: "online"}, containers=(Container("c"),))
    )
    node.add(job(), busy=1)
    loop = node.loop()
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report.failed
    assert node.read("cpu.idle") is False  # besteffort holds an online pod
    assert node.read("cpu.idle", "job") is True
    cap = result.plan.batch_tier.cpu_cap
    assert node.read("cpuset.cpus", "job", container=True) == frozenset(cap.cpus)
    assert node.read("cpuset.cpus", "probe") == ALL
    assert any("shop/probe" in n and "not batch" in n for n in read_status(node.state).notes)
    loop.close()


def test_dedicated_cores_are_exclusive_and_handed_back_when_the_pod_goes(node: Node) -> None:
    db = node.add(dedicated_db())
    node.add(web())
    node.add(job(), busy=1)
    loop = node.loop()
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report.failed
    (dedicated,) = result.plan.dedicated_pods
    mine = frozenset(dedicated.cpus)
    shared = ALL - mine
    assert len(mine) == 1
    assert node.read("cpuset.cpus", "db") == mine
    assert node.read("cpuset.cpus", "web") == shared
    assert node.read("cpuset.cpus") <= shared  # batch never runs on the dedicated core

    node.tree.remove_pod(db)
    (node.pods_dir / "shop_db.json").unlink()
    later = loop.tick()
    assert later is not None and later.report is not None and not later.report.failed
    assert node.read("cpuset.cpus", "web") == ALL  # the shared pool is dissolved
    assert (
        node.tree.cgroups.read("cpuset.cpus", node.tree.layout.qos_cgroup(QOSClass.BURSTABLE)).value
        == ALL
    )
    loop.close()


def test_a_pod_that_leaves_the_batch_tier_gets_its_originals_back(node: Node) -> None:
    burst = job("etl", {TIER_ANNOTATION: "batch"}, cpu=Decimal("0.2"))
    built = node.add(burst, busy=1)
    loop = node.loop()
    first_tick(loop)
    assert node.read("cpu.idle", "etl") is True
    shares = node.tree.cgroups.read("cpu.shares", node.tree.pod_cgroup(built))
    assert shares.value == 3  # the kernel pins shares while idle

    online = Pod(
        "jobs",
        "etl",
        uid=built.uid,
        annotations={TIER_ANNOTATION: "online"},
        containers=built.containers,
        container_ids=built.container_ids,
    )
    node.tree.write_manifest(online, node.pods_dir)
    later = loop.tick()
    assert later is not None and later.report is not None and not later.report.failed
    assert node.read("cpu.idle", "etl") is False
    assert node.read("cpu.shares", "etl") == 204  # kubelet's shares for 200m, restored
    assert node.read("cpuset.cpus", "etl") == ALL
    loop.close()


def test_outcomes_of_one_tick_are_reported(node: Node) -> None:
    node.add(web())
    loop = node.loop()
    result = first_tick(loop)
    assert result.report is not None
    # cgroup v1 has no memory.min/low: reported as unsupported, never as failed.
    unsupported = {r.write.knob for r in result.report.of(Outcome.UNSUPPORTED)}
    assert {"memory.min", "memory.low"} <= unsupported
    loop.close()


@pytest.mark.cgroup_v2
def test_a_restarted_loop_keeps_the_history_it_had_learned(node: Node, caplog) -> None:
    """Memory's demand never falls below its 24-h peak: a restart must not forget it, nor
    start the node's cold start again, nor drop the CPU margin to its initial value."""
    node.add(web())
    node.add(job(), busy=1)
    first = node.loop()
    first_tick(first)
    before = first.brain.predictor
    margin = first.brain.margin
    first.close()
    with caplog.at_level(logging.INFO, logger="agent.loop"):
        again = node.loop()
    assert "history.json restored, saved " in caplog.text
    assert "s ago: online samples CPU 1, memory 1; margin " in caplog.text
    restored = again.brain.predictor
    assert margin is not None and again.brain.margin is not None
    assert (again.brain.margin.fraction, again.brain.margin.pid) == (margin.fraction, margin.pid)
    for name in ("cpu_online", "memory_online"):
        old, new = getattr(before, name), getattr(restored, name)
        assert old.window.values and new.window.values == old.window.values, name
        assert new.window.times == pytest.approx(old.window.times, abs=0.05), name
        assert new.first_at == pytest.approx(old.first_at, abs=0.05), name
    first_tick(again)
    after = again.brain.predictor.memory_online
    assert after.first_at == restored.memory_online.first_at
    assert after.window.peak is not None and after.window.peak >= restored.memory_online.window.peak
    again.close()


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_are_neither_demand_nor_cgroups_to_look_for(node: Node, phase: str) -> None:
    """A completed Job's pod stays in the source (kubelet removed its cgroups): the loop
    neither searches for it nor counts its batch-cpu as demand."""
    node.add(web(), busy=1)
    node.add(job(), busy=1)  # running, batch-cpu 500
    done = node.tree.add_pod(job("done", **{BATCH_CPU: Decimal(4000)}))
    node.tree.remove_pod(done)
    node.tree.write_manifest(dataclasses.replace(done, phase=phase), node.pods_dir)
    loop = node.loop()
    result = first_tick(loop)
    assert [p.pod.key for p in result.topology.node.pods] == ["jobs/job", "shop/web"]
    assert not any("done" in m for m in result.topology.missing), result.topology.missing
    assert result.readings is not None and result.readings.batch_demand.cpu_milli == 500
    assert [b.pod for b in result.plan.batch_pods] == ["jobs/job"]
    loop.close()


def test_under_kubelets_static_cpu_manager_colocd_defers_to_its_cpusets(
    node: Node, tmp_path: Path
) -> None:
    """kubelet's static CPU manager gave db a whole CPU and keeps the rest as its shared
    pool: colocd writes no cpuset on db (nor on any other non-batch pod), takes kubelet's
    assignment for the dedicated pod and keeps batch inside kubelet's shared pool."""
    kubepods = node.tree.cgroups.read("cpuset.cpus", node.tree.layout.kubepods()).value
    cpus = sorted(kubepods)
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    exclusive, default = frozenset(cpus[-1:]), frozenset(cpus[:-1])
    db = node.add(dedicated_db())
    node.add(web())
    node.add(job(), busy=1)
    # What kubelet did: db's container (and pod) on its exclusive CPU, recorded in its state.
    db_cgroup = node.tree.pod_cgroup(db)
    for cgroup in (node.tree.container_cgroup(db, "c"), db_cgroup):  # v1: children first
        node.tree.cgroups.write("cpuset.cpus", cgroup, exclusive)
    state = tmp_path / "cpu_manager_state"
    state.write_text(
        json.dumps(
            {
                "policyName": "static",
                "defaultCpuSet": format_cpuset(default),
                "entries": {db.uid: {"c": format_cpuset(exclusive)}},
                "checksum": 1,
            }
        )
    )
    loop = node.loop(cpu_manager_state=state)
    result = first_tick(loop)
    assert result.report is not None and not result.report.failed, result.report.failed
    plan = result.plan
    (dedicated,) = plan.dedicated_pods
    assert dedicated.by_kubelet and frozenset(dedicated.cpus) == exclusive
    assert plan.kubelet_cpusets and plan.shared_cpus is not None
    assert frozenset(plan.shared_cpus.cpus) == default
    touched = {w.cgroup for w in result.writes if w.knob.startswith("cpuset")}
    be = node.tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
    assert touched and all(c == be or c.startswith(be + "/") for c in touched), touched
    assert node.read("cpuset.cpus", "db") == exclusive
    assert node.read("cpuset.cpus", "web") == kubepods
    assert node.read("cpuset.cpus") <= default  # batch stays in kubelet's shared pool


def test_the_latency_the_online_service_writes_drives_the_margin(
    node: Node, tmp_path: Path
) -> None:
    node.add(web())
    p99 = tmp_path / "p99-ms"
    p99.write_text("90\n")
    loop = node.loop(
        qos={"margin": {"indicator": "latency", "target": 30, "initial_fraction": 0.1}},
        latency_file=p99,
    )
    result = first_tick(loop)
    margin = result.plan.margin
    assert margin.indicator == 90.0 and margin.fraction > 0.1
    assert "online latency 90 above target 30" in margin.reason
    p99.write_text("oops")
    time.sleep(0.05)
    result = loop.tick()
    assert result is not None and result.plan.margin.fraction == margin.fraction
    assert any(n.startswith(f"latency file {p99}: 'oops'") for n in result.notes)
    loop.close()
