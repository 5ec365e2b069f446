"""The executor on real cgroups: every knob, order, de-duplication, the cache, the journal
and revert, the cpu.idle trap, vanished cgroups and kernel refusals."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from isolation.errors import UnsupportedKnobError
from isolation.executor import Executor, Level, Outcome, Write
from isolation.journal import FILENAME, Journal
from isolation.knobs import KNOBS, CpuMax, IoLimit, knob
from isolation.settings import IsolationSettings
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod, Resources

pytestmark = pytest.mark.cgroup_v1


@pytest.fixture
def tree(cgroupfs_tree: KubeletTree) -> KubeletTree:
    """Knobs and readers do not depend on names: one naming is enough here (both namings
    are covered by the discovery and detection tests)."""
    return cgroupfs_tree


def web(tree: KubeletTree) -> tuple[str, str]:
    """A burstable pod with one container; returns (pod cgroup, container cgroup)."""
    res = Resources({"cpu": Decimal("0.5")}, {"cpu": Decimal(1), "memory": Decimal(2**30)})
    pod = tree.add_pod(Pod("shop", "web", containers=(Container("app", res),)))
    return tree.pod_cgroup(pod), tree.container_cgroup(pod, "app")


def executor(tree: KubeletTree, state: Path, **kw: Any) -> Executor:
    journal = Journal(state, str(tree.hierarchy.root), tree.cgroups.version)
    return Executor(tree.cgroups, journal, **kw)


def block_device() -> str:
    """MAJ:MIN of a real disk on this machine (for io.max)."""
    for dev in sorted(Path("/sys/block").glob("*/dev")):
        if not dev.parent.name.startswith(("loop", "zram", "ram")):
            return dev.read_text().strip()
    pytest.skip("no block device")


def value_for(name: str, device: str) -> Any:
    return {
        "cpu.idle": True,
        "cpu.shares": 300,
        "cpu.max": CpuMax(30_000, 100_000),
        "cpu.max.burst": 10_000,
        "cpuset.cpus": frozenset({min(os.sched_getaffinity(0))}),  # a CPU of this machine
        "cpuset.mems": frozenset({0}),
        "memory.min": 16 << 20,
        "memory.low": 32 << 20,
        "memory.high": 512 << 20,
        "memory.max": 256 << 20,
        "memory.soft_limit": 128 << 20,
        "io.weight": 500,
        "io.max": (IoLimit(device, rbps=10 << 20, wiops=200),),
        "pids.max": 64,
        "freeze": True,
    }[name]


@pytest.mark.cgroup_v2
def test_every_knob_is_applied_read_back_and_reverted(tree: KubeletTree, tmp_path: Path) -> None:
    _, app = web(tree)
    ex = executor(tree, tmp_path)
    device = block_device()
    before = {}
    for n in KNOBS:
        with contextlib.suppress(UnsupportedKnobError):  # on this host, or in this cgroup
            before[n] = tree.cgroups.read(n, app)
    writes = [Write(n, app, value_for(n, device), Level.CONTAINER) for n in KNOBS]
    report = ex.apply(writes)
    for result in report.results:
        name = result.write.knob
        reason = tree.cgroups.unsupported(name)
        if reason is not None:
            assert result.outcome is Outcome.UNSUPPORTED, result
            assert result.reason == reason
        elif name not in before:  # e.g. io.weight without BFQ or io.cost
            assert result.outcome is Outcome.UNSUPPORTED, result
            assert "does not exist in" in result.reason
        elif name == "cpu.shares":
            # cpu.idle=1 in the same batch pins shares; the kernel would refuse them.
            assert (result.outcome, result.reason) == (
                Outcome.SKIPPED,
                "cpu.idle=1 pins cpu.shares",
            )
        else:
            # Only what differs is written (cpuset.mems is {0} already on one NUMA node).
            wanted = tree.cgroups.normalize(name, result.write.value)
            same = before[name].value == wanted
            assert result.outcome is (Outcome.SKIPPED if same else Outcome.APPLIED), result
            assert tree.cgroups.read(name, app).value == wanted
    # Nothing left to do the second time, even with the cache off.
    ex.force_rewrite_s = 0
    again = ex.apply(writes)
    assert not again.applied and not again.failed
    reverted = ex.revert()
    assert not reverted.failed, reverted.failed
    for name, original in before.items():
        assert tree.cgroups.read(name, app).texts == original.texts, name
    assert not (tmp_path / FILENAME).exists()


def test_v1_memory_knobs_that_do_not_exist_say_so(tree: KubeletTree, tmp_path: Path) -> None:
    _, app = web(tree)
    report = executor(tree, tmp_path).apply(
        [Write(n, app, 1 << 20) for n in ("memory.min", "memory.low", "memory.high")]
    )
    assert [r.outcome for r in report.results] == [Outcome.UNSUPPORTED] * 3
    assert "cgroup v1 has no memory.min; nearest: memory.soft_limit" in report.results[0].reason


def test_lowering_goes_children_first_and_raising_parents_first(
    tree: KubeletTree, tmp_path: Path
) -> None:
    pod, app = web(tree)
    ex = executor(tree, tmp_path)
    # v1 refuses a child quota above its parent's, so only a safe order succeeds.
    down = [Write("cpu.max", pod, CpuMax(20_000), Level.POD),
            Write("cpu.max", app, CpuMax(10_000), Level.CONTAINER)]  # fmt: skip
    assert [r.outcome for r in ex.apply(down).results] == [Outcome.APPLIED] * 2
    up = [Write("cpu.max", app, CpuMax(150_000), Level.CONTAINER),
          Write("cpu.max", pod, CpuMax(200_000), Level.POD)]  # fmt: skip
    assert [r.outcome for r in ex.apply(up).results] == [Outcome.APPLIED] * 2
    assert tree.cgroups.read("cpu.max", app).value == CpuMax(150_000)
    # The same change one write at a time, child first, is refused by the kernel: the
    # report names the file and the value.
    ex.apply([Write("cpu.max", app, CpuMax(100_000), Level.CONTAINER)])
    ex.apply([Write("cpu.max", pod, CpuMax(100_000), Level.POD)])
    refused = ex.apply([Write("cpu.max", app, CpuMax(150_000), Level.CONTAINER)]).failed
    assert len(refused) == 1 and refused[0].errno == 22
    assert "cpu.cfs_quota_us: Invalid argument" in refused[0].reason
    assert "write '150000'" in refused[0].reason


def test_cpusets_move_without_ever_leaving_a_child_outside_its_parent(
    tree: KubeletTree, tmp_path: Path
) -> None:
    cpus = sorted(tree.cgroups.read("cpuset.cpus", tree.layout.kubepods()).value)
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    first, second = cpus[:2]
    pod, app = web(tree)
    ex = executor(tree, tmp_path)
    for cpus in ({second}, {first}, {first, second}):
        report = ex.apply(
            [
                Write("cpuset.cpus", pod, frozenset(cpus), Level.POD),
                Write("cpuset.cpus", app, frozenset(cpus), Level.CONTAINER),
            ]
        )
        assert [r.outcome for r in report.results] == [Outcome.APPLIED] * 2, report
        assert tree.cgroups.read("cpuset.cpus", app).value == frozenset(cpus)


def test_duplicates_collapse_and_conflicts_fail_both(tree: KubeletTree, tmp_path: Path) -> None:
    pod, app = web(tree)
    report = executor(tree, tmp_path).apply(
        [
            Write("pids.max", app, 10),
            Write("pids.max", "/" + app + "/", 10),
            Write("pids.max", pod, 10),
            Write("pids.max", pod, 20),
        ]
    )
    assert [r.outcome for r in report.results] == [
        Outcome.APPLIED,
        Outcome.SKIPPED,
        Outcome.FAILED,
        Outcome.FAILED,
    ]
    assert "conflicting values in one batch (10 and 20)" in report.results[2].reason
    assert tree.cgroups.read("pids.max", pod).value is None


def test_unchanged_values_are_skipped_until_the_forced_rewrite(
    tree: KubeletTree, tmp_path: Path
) -> None:
    _, app = web(tree)
    now = [1000.0]
    ex = executor(tree, tmp_path, force_rewrite_s=60, clock=lambda: now[0])
    w = [Write("pids.max", app, 32, Level.CONTAINER)]
    assert ex.apply(w).results[0].outcome is Outcome.APPLIED
    # Someone else (kubelet) changes the file behind our back.
    tree.cgroups.write("pids.max", app, 99)
    assert ex.apply(w).results[0].reason == "unchanged (cached)"
    now[0] += 61
    assert ex.apply(w).results[0].outcome is Outcome.APPLIED
    assert tree.cgroups.read("pids.max", app).value == 32
    assert ex.apply(w).results[0].reason == "unchanged (cached)"
    assert ex.totals[Outcome.APPLIED] == 2


def test_the_executor_holds_no_more_memory_however_many_values_it_writes(
    tree: KubeletTree, tmp_path: Path
) -> None:
    """A quota rewritten with a new value every tick (the quota mode does) must not leave
    a trace of each value behind: the 30-min soak's RSS grew by ~9 KiB per pod churned
    while every write ever checked was remembered."""
    _, app = web(tree)
    ex = executor(tree, tmp_path)

    def ticks(first: int, count: int) -> None:
        for quota in range(first, first + count):
            w = Write("cpu.max", app, CpuMax(quota, 100_000), Level.CONTAINER)
            assert ex.apply([w]).results[0].outcome is Outcome.APPLIED

    tracemalloc.start()
    try:
        ticks(10_000, 300)  # warm: caches and free lists filled
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        ticks(20_000, 3_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Remembering every write checked held ~0.7 KiB per value (2.1 MB here, measured).
    assert grown < 256 * 1024, f"{grown} bytes held after 3,000 new values"
    assert tree.cgroups.read("cpu.max", app).value == CpuMax(22_999, 100_000)


@pytest.mark.cgroup_v2
def test_clearing_cpu_idle_restores_shares(tree: KubeletTree, tmp_path: Path) -> None:
    _, app = web(tree)
    ex = executor(tree, tmp_path)
    ex.apply([Write("cpu.shares", app, 300)])
    ex.apply([Write("cpu.idle", app, True)])
    # The kernel pins shares while idle: our write is skipped, not failed.
    pinned = ex.apply([Write("cpu.shares", app, 400)]).results[0]
    assert (pinned.outcome, pinned.reason) == (Outcome.SKIPPED, "cpu.idle=1 pins cpu.shares")
    # Clearing idle alone: the kernel resets shares to 1024; the journal's original comes back.
    ex.apply([Write("cpu.idle", app, False)])
    kubelet = tree.cgroups.normalize("cpu.shares", 512)  # as v2's cpu.weight reads it back
    assert tree.cgroups.read("cpu.shares", app).value == kubelet
    # Clearing idle with shares in the same batch: the batch's value wins.
    ex.apply([Write("cpu.idle", app, True)])
    report = ex.apply([Write("cpu.shares", app, 300), Write("cpu.idle", app, False)])
    assert [r.outcome for r in report.results] == [Outcome.APPLIED] * 2
    assert tree.cgroups.read("cpu.shares", app).value == tree.cgroups.normalize("cpu.shares", 300)
    ex.apply([Write("cpu.idle", app, True)])
    assert not ex.revert().failed
    assert tree.cgroups.read("cpu.idle", app).value is False
    assert tree.cgroups.read("cpu.shares", app).value == kubelet


@pytest.mark.cgroup_v2
def test_a_vanished_cgroup_is_counted_not_raised(
    tree: KubeletTree, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pod = tree.add_pod(Pod("jobs", "gone", containers=(Container("c"),)))
    app = tree.container_cgroup(pod, "c")
    ex = executor(tree, tmp_path)
    ex.apply([Write("pids.max", app, 10)])
    tree.remove_pod(pod)
    with caplog.at_level(logging.DEBUG, logger="isolation.executor"):
        report = ex.apply([Write("pids.max", app, 20), Write("cpu.max", app, CpuMax(5000))])
    assert [r.outcome for r in report.results] == [Outcome.VANISHED] * 2
    assert ex.totals[Outcome.VANISHED] == 2
    assert "cgroup vanished" in caplog.text
    # Its journal entry has nothing left to restore: revert drops it quietly.
    assert ex.revert().results[0].outcome is Outcome.VANISHED
    assert len(ex.journal or ()) == 0


def test_a_journal_that_cannot_be_written_blocks_the_write(
    tree: KubeletTree, tmp_path: Path
) -> None:
    _, app = web(tree)
    ex = executor(tree, tmp_path)
    ex.journal.path.mkdir()  # type: ignore[union-attr]  # a directory where the file goes
    result = ex.apply([Write("pids.max", app, 7)]).results[0]
    assert result.outcome is Outcome.FAILED
    assert result.reason.startswith("not written: journal")
    assert tree.cgroups.read("pids.max", app).value is None


def test_revert_command_restores_after_a_restart(
    tree: KubeletTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod, app = web(tree)
    settings = IsolationSettings(state_dir=tmp_path, revert_on_exit=False)
    first = Executor.from_settings(tree.cgroups, settings)
    first.apply([Write("memory.max", pod, 300 << 20), Write("pids.max", app, 5)])
    assert first.close() is None  # not configured to revert
    assert tree.cgroups.read("pids.max", app).value == 5
    assert main(["revert", "--state-dir", str(tmp_path), "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert out.count('"result": "applied"') == 2
    assert tree.cgroups.read("pids.max", app).value is None
    assert tree.cgroups.read("memory.max", pod).value == 1 << 30
    assert main(["revert", "--state-dir", str(tmp_path)]) == 0
    assert "nothing to revert" in capsys.readouterr().err


def test_revert_on_exit(tree: KubeletTree, tmp_path: Path) -> None:
    _, app = web(tree)
    settings = IsolationSettings(state_dir=tmp_path, revert_on_exit=True)
    ex = Executor.from_settings(tree.cgroups, settings)
    ex.apply([Write("freeze", app, True)])
    report = ex.close()
    assert report is not None and len(report.applied) == 1
    assert tree.cgroups.read("freeze", app).value is False


def test_a_journal_from_another_hierarchy_is_refused(tmp_path: Path) -> None:
    Journal(tmp_path, "/elsewhere", 2).record("a/b", "pids.max", ("max\n",))
    with pytest.raises(Exception, match="written for cgroup v2 at /elsewhere"):
        Journal(tmp_path, "/sys/fs/cgroup", 1)


def test_values_and_names_are_validated_before_anything_is_written(
    tree: KubeletTree, tmp_path: Path
) -> None:
    _, app = web(tree)
    report = executor(tree, tmp_path).apply(
        [
            Write("cpu.quota", app, 1),
            Write("cpu.shares", app, 1),
            Write("pids.max", app + "/../../x", 1),
        ]
    )
    reasons = [r.reason for r in report.failed]
    assert reasons[0].startswith("set cpu.quota: unknown knob")
    assert reasons[1] == "set cpu.shares: invalid value 1: must be in [2, 262144]"
    assert "component '..' is not allowed" in reasons[2]
    assert knob("cpu.shares").check(2) == 2


def test_a_journal_entry_that_cannot_be_reverted_is_kept(tree: KubeletTree, tmp_path: Path) -> None:
    _, app = web(tree)
    ex = executor(tree, tmp_path)
    assert ex.journal is not None
    ex.journal.record(app, "cpu.quota", ("100000\n",))  # a knob this version does not know
    ex.apply([Write("pids.max", app, 3)])
    report = ex.revert()
    assert [r.outcome for r in report.results] == [Outcome.APPLIED, Outcome.FAILED]
    assert report.results[1].reason.startswith("revert cpu.quota: set cpu.quota: unknown knob")
    assert [e.knob for e in Journal(tmp_path, str(tree.hierarchy.root), 1)] == ["cpu.quota"]
