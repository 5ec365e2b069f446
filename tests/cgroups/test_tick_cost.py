"""A tick on an unchanged node is cheap (issue 10): it looks at no pod directory, walks no
subtree, reads no knob back and writes nothing; per pod it reads only the files the brain
uses. When the pods change, it looks again. Counted on the loop's own `Cgroups` (a spy
around the real calls, which still go to the real cgroups of a lab tree on this host).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.loop import Loop
from isolation.detect import Hierarchy, Mode
from isolation.layout import Driver
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
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


def job() -> Pod:
    return Pod("jobs", "job", containers=(Container("loop", Resources({BATCH_CPU: Decimal(500)})),))


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


def _loop(tree: KubeletTree, tmp_path: Path) -> tuple[Loop, Path]:
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
    for _ in range(2):
        assert loop.tick() is not None
    return loop, pods


def test_a_steady_tick_looks_at_no_pod_directory_and_writes_nothing(
    tree: KubeletTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, pods = _loop(tree, tmp_path)
    spy = Spy(loop, monkeypatch)
    try:
        steady = loop.tick()
        assert steady is not None and steady.report is not None
        assert spy.of("exists") == [] and spy.of("walk") == [] and spy.of("write") == []
        # Only kubepods' cpuset (the CPUs pods may use) is read as a knob; every planned
        # write is skipped from the cache, unread.
        assert {c[2] for c in spy.of("read")} <= {tree.layout.kubepods()}
        assert steady.report.applied == () and steady.report.failed == ()
        assert steady.readings is not None and steady.readings.cpu.online_used_milli is not None

        # The pods change: the next tick looks at the tree again and finds the new pod.
        tree.write_manifest(tree.add_pod(web("api")), pods)
        spy.clear()
        changed = loop.tick()
        assert changed is not None
        assert spy.of("exists"), "a new set of pods is checked against the tree"
        assert any(p.key == "shop/api" for p in changed.topology.placed)
    finally:
        loop.close()


def test_a_tick_reads_per_pod_only_what_the_brain_uses(
    tree: KubeletTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, _ = _loop(tree, tmp_path)
    spy = Spy(loop, monkeypatch)
    try:
        result = loop.tick()
        assert result is not None
        placed = {p.cgroup: p.tier for p in result.topology.placed}
        read: dict[str, set[str]] = {c: set() for c in placed}
        for path in spy.files:
            directory, _, name = path.rpartition("/")
            for cgroup in placed:
                if directory.endswith("/" + cgroup):
                    read[cgroup].add(name)
        online = [c for c, t in placed.items() if t is Tier.ONLINE]
        batch = [c for c, t in placed.items() if t is Tier.BATCH]
        assert online and batch
        v1 = tree.hierarchy.mode is not Mode.V2
        # CPU and memory usage and the working set, from every pod.
        usage = {"cpuacct.usage", "memory.usage_in_bytes"} if v1 else {"cpu.stat", "memory.current"}
        for cgroup in placed:
            assert "memory.pressure" not in read[cgroup]  # only the node's is used
            assert usage | {"memory.stat"} <= read[cgroup], read[cgroup]
        # Batch's throttling (v1: cpu.stat; v2 has it in the usage file) and stalls go into
        # no reading; online's do.
        for cgroup in batch:
            assert not read[cgroup] & {"cpu.stat" if v1 else "", "cpu.pressure"}, read[cgroup]
        for cgroup in online:
            assert "cpu.stat" in read[cgroup]
            if tree.hierarchy.unified is not None:  # v2 or hybrid: PSI per cgroup
                assert "cpu.pressure" in read[cgroup]
        if tree.hierarchy.unified is not None:
            assert result.readings is not None
            assert result.readings.memory_pressure is not None  # the node's, still read
            assert result.readings.cpu_pressure is not None  # online's, still read
    finally:
        loop.close()
