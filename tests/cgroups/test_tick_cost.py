"""A tick on an unchanged node is cheap (issue 10): it looks at no pod directory and walks
no subtree; of the planned writes it reads and writes only those whose value changed, the
rest are skipped from the cache; per pod it reads only the files the brain uses. When the
pods change, it looks again. Counted on the loop's own `Cgroups` (a spy around the real
calls, which still go to the real cgroups of a lab tree on this host). Between ticks, a
fast path with nothing to watch (batch under cpu.idle) does not wake up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.config import FastPathSettings
from agent.loop import Loop
from agent.observe.cover import Cover
from agent.observe.fastpath import FastPath
from agent.observe.sampler import Sampler
from agent.tick import TickResult
from isolation.detect import Hierarchy, Mode
from isolation.executor import Outcome, Write
from isolation.layout import Driver
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import BATCH_CPU, Container, Pod, Resources
from qos.settings import QosSettings
from qos.state import NodeCapacity
from qos.tiers import Tier
from tests.tree_loop import tree_loop

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.cgroup_v2]

GIB = 1 << 30


def web(name: str = "web") -> Pod:
    res = Resources({"cpu": Decimal("0.5"), "memory": Decimal(GIB)}, {"cpu": Decimal(1)})
    return Pod("shop", name, containers=(Container("app", res),))


def job(name: str = "job") -> Pod:
    return Pod("jobs", name, containers=(Container("loop", Resources({BATCH_CPU: Decimal(500)})),))


def key(w: Write) -> tuple[str, str]:
    return (w.cgroup, w.knob)


class Spy:
    """Counts calls of some `Cgroups` methods (by method and first arguments) and the files
    its descriptor cache reads, passing every call through."""

    def __init__(self, loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[tuple[str, ...]] = Counter()
        self.files: list[str] = []
        cgroups = loop.cgroups
        for name in ("exists", "walk", "read", "write"):
            monkeypatch.setattr(cgroups, name, self._wrap(name, getattr(cgroups, name)))
        fds = cgroups._fds
        monkeypatch.setattr(fds, "read", self._files(fds.read))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[(name, *map(str, args[:2]))] += 1
            return real(*args, **kwargs)

        return call

    def _files(self, real: Callable[[str], bytes | None]) -> Callable[[str], bytes | None]:
        def read(path: str) -> bytes | None:
            self.files.append(path)
            return real(path)

        return read

    def clear(self) -> None:
        self.calls.clear()
        self.files.clear()

    def of(self, name: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == name]


@pytest.fixture
def tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as t:
        yield t


def _loop(tree: KubeletTree, tmp_path: Path) -> tuple[Loop, Path, TickResult]:
    pods = tmp_path / "pods"
    pods.mkdir()
    for pod, busy in ((web(), 1), (job(), 1)):
        built = tree.add_pod(pod)
        for _ in range(busy):
            tree.spawn(built, built.containers[0].name, BUSY_LOOP)
        tree.write_manifest(built, pods)
    settings = QosSettings.model_validate({"cpu": {"mechanism": "cpuset"}})
    loop = tree_loop(tree, pods, tmp_path / "state", settings, NodeCapacity(2000, 4 * GIB))
    loop.prime()
    time.sleep(0.2)
    assert loop.tick() is not None
    last = loop.tick()
    assert last is not None
    return loop, pods, last


def test_a_steady_tick_looks_at_no_pod_directory_and_touches_only_what_changed(
    tree: KubeletTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, pods, before = _loop(tree, tmp_path)
    spy = Spy(loop, monkeypatch)
    try:
        steady = loop.tick()
        assert steady is not None and steady.report is not None
        assert spy.of("exists") == [] and spy.of("walk") == []
        # A planned value the last tick wrote is skipped from the cache, unread; only what
        # the plan changed (busy loops move the budgets a little) is read and written, and
        # kubepods' cpuset (the CPUs pods may use) is read.
        last = {key(w): w.value for w in before.writes}
        changed = {key(w) for w in steady.writes if last.get(key(w)) != w.value}
        kept = [r for r in steady.report.results if key(r.write) not in changed]
        assert all(r.outcome is not Outcome.APPLIED for r in kept), kept
        assert sum(r.reason == "unchanged (cached)" for r in kept) >= 5, kept
        read = {(cgroup, knob) for _, knob, cgroup in spy.of("read")}
        assert read <= changed | {(tree.layout.kubepods(), "cpuset.cpus")}, read
        assert {(cgroup, knob) for _, knob, cgroup in spy.of("write")} <= changed
        assert steady.report.failed == ()
        assert steady.readings is not None and steady.readings.cpu.online_used_milli is not None

        # The pods change: the next tick looks at the tree again and finds the new pod.
        tree.write_manifest(tree.add_pod(web("api")), pods)
        spy.clear()
        grown = loop.tick()
        assert grown is not None
        assert spy.of("exists"), "a new set of pods is checked against the tree"
        assert any(p.key == "shop/api" for p in grown.topology.placed)
    finally:
        loop.close()


def guaranteed(name: str) -> Pod:
    both = {"cpu": Decimal(1), "memory": Decimal(GIB)}
    return Pod("shop", name, containers=(Container("app", Resources(both, both)),))


def files_read(spy: Spy, cgroups: list[str]) -> dict[str, set[str]]:
    """The names of the files the spy saw read in each of `cgroups`' own directories."""
    read: dict[str, set[str]] = {c: set() for c in cgroups}
    for path in spy.files:
        directory, _, name = path.rpartition("/")
        for cgroup in cgroups:
            if directory.endswith("/" + cgroup):
                read[cgroup].add(name)
    return read


@pytest.mark.parametrize("indicator", ["cpu_psi_some_avg10", "cfs_throttled_ratio"])
def test_a_tick_sums_tiers_from_qos_levels_and_reads_per_pod_only_what_does_not_add_up(
    tree: KubeletTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indicator: str
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    for pod in (web("a"), web("b"), guaranteed("g"), job(), job("job2")):
        tree.write_manifest(tree.add_pod(pod), pods)
    settings = QosSettings.model_validate(
        {"cpu": {"mechanism": "cpuset"}, "margin": {"indicator": indicator}}
    )
    loop = tree_loop(tree, pods, tmp_path / "state", settings, NodeCapacity(2000, 4 * GIB))
    try:
        loop.prime()
        assert loop.tick() is not None
        spy = Spy(loop, monkeypatch)
        result = loop.tick()
        assert result is not None and result.readings is not None
        placed = {p.cgroup: p.tier for p in result.topology.placed}
        online = [c for c, t in placed.items() if t is Tier.ONLINE]
        batch = [c for c, t in placed.items() if t is Tier.BATCH]
        assert len(online) == 3 and len(batch) == 2
        v1 = tree.hierarchy.mode is not Mode.V2
        # The tiers' use comes from the QoS levels: kubepods, and besteffort less from it.
        levels = [tree.layout.kubepods(), tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)]
        memory = {"memory.usage_in_bytes" if v1 else "memory.current", "memory.stat"}
        for level, names in files_read(spy, levels).items():
            assert memory <= names, (level, names)
        read = files_read(spy, list(placed))
        for cgroup in batch:  # nothing of batch's own is read
            assert read[cgroup] == set(), read[cgroup]
        # Online pods: their CPU stall (the margin's indicator) and, when the margin watches
        # it, their throttling (v1: cpu.stat; v2 has it in the usage file); no memory.
        throttling = indicator == "cfs_throttled_ratio"
        for cgroup in online:
            assert not read[cgroup] & memory, read[cgroup]
            if v1:
                assert ("cpu.stat" in read[cgroup]) is throttling, read[cgroup]
            if tree.hierarchy.unified is not None:  # v2 or hybrid: PSI per cgroup
                assert "cpu.pressure" in read[cgroup]
        readings = result.readings
        assert readings.cpu.online_used_milli is not None
        assert readings.memory.online_memory_bytes is not None
        assert (readings.throttling is not None) is throttling
        if tree.hierarchy.unified is not None:
            assert readings.memory_pressure is not None  # the node's, still read
            assert readings.cpu_pressure is not None  # online's, still read
    finally:
        loop.close()


class CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


def test_a_fast_path_with_nothing_to_watch_sleeps_until_the_next_tick(tree: KubeletTree) -> None:
    pod = tree.add_pod(web())
    fast = FastPath(
        FastPathSettings(psi_triggers=False),
        tree.cgroups,
        Sampler(tree.cgroups, "", time.monotonic),
        time.monotonic,
    )
    surges: list[object] = []
    try:
        fast.arm(Cover(), None)  # batch under cpu.idle: no cap to clamp, nothing to watch
        stop, start = CountingEvent(), time.monotonic()
        fast.watch(start + 0.3, stop, surges.append)
        assert time.monotonic() - start >= 0.29 and stop.waits == 1 and surges == []
        cgroup = tree.pod_cgroup(pod)  # a cap to clamp: the reader runs every 50 ms
        fast.arm(Cover((cgroup,), (cgroup,)), None)
        stop = CountingEvent()
        fast.watch(time.monotonic() + 0.3, stop, surges.append)
        assert stop.waits >= 3
    finally:
        fast.close()
