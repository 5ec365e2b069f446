"""The kernel really enforces what the executor writes: real processes, real limits.

The machine is shared with other work, so tolerances are generous and each test is short.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from isolation.executor import Executor, Level, Outcome, Write
from isolation.journal import Journal
from isolation.knobs import CpuMax
from isolation.readings import CONTAINER_TICK, ReadSet
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.cgroup_v2]

BUSY = [sys.executable, "-c", "while True: pass"]
# How much of the normal group's CPU the idle group may get. Under QEMU's software emulation
# (tests/vm sets COLOCD_IN_VM) the guest clock charges the host's descheduling of the vCPU to
# whichever task runs, which blurs the split (measured there: 0.2-0.4); on the host it is <1%.
IDLE_SHARE = 0.6 if os.environ.get("COLOCD_IN_VM") else 0.2


def executor(tree: KubeletTree, tmp_path: Path) -> Executor:
    return Executor(tree.cgroups, Journal(tmp_path, str(tree.hierarchy.root), tree.cgroups.version))


def busy_pod(tree: KubeletTree, name: str) -> tuple[str, str]:
    pod = tree.add_pod(Pod("batch", name, containers=(Container("loop"),)))
    tree.spawn(pod, "loop", BUSY)
    return tree.pod_cgroup(pod), tree.container_cgroup(pod, "loop")


def cpu_ns(tree: KubeletTree, cgroup: str) -> int:
    sample = tree.cgroups.sample(cgroup, CONTAINER_TICK)
    assert sample is not None and sample.cpu.usage_ns is not None
    return sample.cpu.usage_ns


def throttled_periods(tree: KubeletTree, cgroup: str) -> int:
    sample = tree.cgroups.sample(cgroup, ReadSet(memory_stat=False, psi=False))
    assert sample is not None and sample.cpu.throttled_periods is not None
    return sample.cpu.throttled_periods


def cores_used(tree: KubeletTree, cgroups: list[str], seconds: float) -> list[float]:
    start = [cpu_ns(tree, c) for c in cgroups]
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return [(cpu_ns(tree, c) - s) / 1e9 / wall for c, s in zip(cgroups, start, strict=True)]


def test_a_20_percent_quota_holds_a_busy_loop_near_20_percent(
    cgroupfs_tree: KubeletTree, tmp_path: Path
) -> None:
    tree = cgroupfs_tree
    _, loop = busy_pod(tree, "quota")
    ex = executor(tree, tmp_path)
    report = ex.apply([Write("cpu.max", loop, CpuMax(20_000, 100_000), Level.CONTAINER)])
    assert report.results[0].outcome is Outcome.APPLIED
    time.sleep(0.2)
    (used,) = cores_used(tree, [loop], 1.5)
    assert 0.08 < used < 0.3, used
    throttled = throttled_periods(tree, loop)
    assert throttled > 0
    # Reverted: no quota, so no more throttling (however busy the shared machine is).
    ex.revert()
    time.sleep(0.1)
    before = throttled_periods(tree, loop)
    time.sleep(0.5)
    assert throttled_periods(tree, loop) == before


def test_cpu_idle_yields_to_a_normal_group_on_a_shared_cpu(
    cgroupfs_tree: KubeletTree, tmp_path: Path
) -> None:
    tree = cgroupfs_tree
    pods = [busy_pod(tree, name) for name in ("normal", "idle")]
    ex = executor(tree, tmp_path)
    one_cpu = frozenset({min(os.sched_getaffinity(0))})
    # Two sibling pods with equal, large weight on one CPU: they split it. (The weight is
    # large because an idle group weighs 3, and 1024 shares are only cpu.weight 39 on v2.)
    writes = [
        Write(knob, cg, value, level)
        for pod, loop in pods
        for cg, level in ((pod, Level.POD), (loop, Level.CONTAINER))
        for knob, value in (("cpuset.cpus", one_cpu), ("cpu.shares", 10240))
    ]
    report = ex.apply(writes)
    assert report.counts()["applied"] == len(writes), report.results
    time.sleep(0.2)
    normal, other = cores_used(tree, [pods[0][1], pods[1][1]], 1.0)
    assert other > 0.4 * normal, (normal, other)
    # cpu.idle on one of them: it now gets what the other leaves, next to nothing.
    assert ex.apply([Write("cpu.idle", pods[1][0], True)]).results[0].outcome is Outcome.APPLIED
    time.sleep(0.2)
    normal, idle = cores_used(tree, [pods[0][1], pods[1][1]], 1.0)
    # The machine is shared: compare the two groups with each other, not with a whole CPU.
    assert normal > 0.05, normal
    assert idle < IDLE_SHARE * normal, (normal, idle)


def test_freeze_stops_progress_and_thaw_resumes_it(
    cgroupfs_tree: KubeletTree, tmp_path: Path
) -> None:
    tree = cgroupfs_tree
    pod, loop = busy_pod(tree, "frozen")
    ex = executor(tree, tmp_path)
    assert ex.apply([Write("freeze", pod, True)]).results[0].outcome is Outcome.APPLIED
    time.sleep(0.3)  # v1 may pass through FREEZING
    (frozen,) = cores_used(tree, [loop], 0.5)
    assert frozen < 0.02, frozen
    assert ex.apply([Write("freeze", pod, False)]).results[0].outcome is Outcome.APPLIED
    (thawed,) = cores_used(tree, [loop], 0.5)
    assert thawed > 0.1, thawed


def test_memory_max_stops_an_allocation_beyond_it(
    cgroupfs_tree: KubeletTree, tmp_path: Path
) -> None:
    tree = cgroupfs_tree
    pod = tree.add_pod(Pod("batch", "hog", containers=(Container("mem"),)))
    cg = tree.container_cgroup(pod, "mem")
    ex = executor(tree, tmp_path)
    assert ex.apply([Write("memory.max", cg, 32 << 20)]).results[0].outcome is Outcome.APPLIED
    hog = tree.spawn(
        pod,
        "mem",
        [sys.executable, "-c", "b = bytearray(128 << 20); b[::4096] = b'x' * (len(b) // 4096)"],
    )
    assert hog.wait(timeout=60) == -9  # OOM-killed inside its cgroup, nothing else
