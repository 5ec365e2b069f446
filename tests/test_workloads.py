"""The workloads as real subprocesses: gate, reports, samples, stop (short runs: 2 shared cores)."""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import pytest

from lab.errors import WorkloadError
from lab.workloads import (
    CacheInterval,
    Ended,
    MemoryGrowth,
    ProbeInterval,
    Started,
    Throughput,
    WorkloadProcess,
    stop_all,
)
from lab.workloads.cache_service import cgroup_cache_bytes, memory_cgroup_dir
from lab.workloads.latency_probe import WorkPlan
from lab.workloads.latency_probe import build_parser as probe_parser
from lab.workloads.protocol import iter_kind
from tests.host_cgroups import requires_cgroup_v1

MIB = 1 << 20


def run_for(proc: WorkloadProcess, seconds: float) -> int:
    proc.open_gate()
    proc.wait_started(30)
    time.sleep(seconds)
    return proc.stop()


def test_probe_requests_arrive_on_schedule_and_use_about_the_planned_cpu(tmp_path: Path) -> None:
    proc = WorkloadProcess.spawn(
        "probe",
        "latency_probe",
        ["--period-ms=4", "--work-us=1000", "--report-every=0.5"],
        tmp_path,
        samples=True,
    )
    assert run_for(proc, 1.5) == 0
    samples = proc.samples()
    assert 200 <= len(samples) <= 450  # ~375 at 4 ms; generous for a loaded machine
    gaps = {round(b.arrival_t - a.arrival_t, 6) for a, b in itertools.pairwise(samples)}
    assert gaps == {0.004}  # open loop: arrivals never drift with delays
    assert all(0 <= s.lateness_us <= s.latency_us for s in samples)
    intervals = list(iter_kind(proc.reports, ProbeInterval))
    assert sum(i.requests for i in intervals) == len(samples)
    cpu_share = intervals[-1].cpu_s / 1.5
    assert 0.05 < cpu_share < 0.9  # 1 ms of work per 4 ms; calibration noise allowed
    assert isinstance(proc.reports[-1], Ended) and proc.reports[-1].reason == "signal"


def test_wake_probe_sleeps_and_records_how_late_it_woke(tmp_path: Path) -> None:
    proc = WorkloadProcess.spawn(
        "wake", "wake_probe", ["--sleep-us=2000", "--report-every=0.5"], tmp_path, samples=True
    )
    assert run_for(proc, 1.5) == 0
    samples = proc.samples()
    assert 200 <= len(samples) <= 760  # ~700 at 2 ms; fewer on a loaded machine
    # Closed loop: the next sleep starts after the last wake-up, at least 2 ms later.
    gaps = [b.arrival_t - a.arrival_t for a, b in itertools.pairwise(samples)]
    assert min(gaps) >= 0.002
    assert all(0 <= s.lateness_us <= s.latency_us for s in samples)  # never wakes early
    intervals = list(iter_kind(proc.reports, ProbeInterval))
    assert sum(i.requests for i in intervals) == len(samples)
    assert intervals[-1].cpu_s < 0.5  # sleeping, not spinning


def test_work_plan_is_seeded_bursty_and_keeps_its_mean() -> None:
    args = probe_parser().parse_args(
        ["--report=r", "--samples=s", "--period-ms=2", "--work-us=1000"]
    )
    per_us = 30.0
    plan_a, plan_b = WorkPlan(args, per_us), WorkPlan(args, per_us)
    a = [plan_a.iterations(i) for i in range(20_000)]
    b = [plan_b.iterations(i) for i in range(20_000)]
    assert a == b
    assert sum(a) / len(a) == pytest.approx(1000 * per_us, rel=0.05)
    half = 100  # 400 ms bursts at 2 ms per request: 100 busy, then 100 quiet
    busy = [v for i, v in enumerate(a) if (i // half) % 2 == 0]
    quiet = [v for i, v in enumerate(a) if (i // half) % 2 == 1]
    assert sum(busy) / len(busy) > 2 * sum(quiet) / len(quiet)
    assert max(a) <= 0.9 * 2000 * per_us  # never longer than the period


def test_work_plan_without_bursts_is_steady() -> None:
    args = argparse.Namespace(
        seed=3,
        period_ms=2.0,
        work_us=500.0,
        burst_period_ms=400.0,
        burst_depth=0.0,
        jitter_sigma=0.0,
    )
    plan = WorkPlan(args, 10.0)
    assert {plan.iterations(i) for i in range(1000)} == {5000}


def test_cpu_hog_reports_growing_units(tmp_path: Path) -> None:
    proc = WorkloadProcess.spawn("hog", "cpu_hog", ["--report-every=0.1"], tmp_path)
    assert run_for(proc, 0.8) == 0
    units = [r.units for r in iter_kind(proc.reports, Throughput)]
    assert len(units) >= 4
    assert units == sorted(units) and units[-1] > 0


def test_memory_hog_grows_to_its_target_and_holds_it(tmp_path: Path) -> None:
    proc = WorkloadProcess.spawn(
        "mem", "memory_hog", ["--rate-mib-s=128", "--target-mib=48"], tmp_path
    )
    proc.open_gate()
    proc.wait_started(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        proc.poll()
        grown = [r.anon_bytes for r in iter_kind(proc.reports, MemoryGrowth)]
        if grown and grown[-1] == 48 * MIB:
            break
        time.sleep(0.05)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    rss_kib = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
    assert proc.stop() == 0
    grown = [r.anon_bytes for r in iter_kind(proc.reports, MemoryGrowth)]
    assert grown == sorted(grown) and grown[-1] == 48 * MIB
    assert rss_kib * 1024 >= 48 * MIB  # really touched, not just mapped


def test_closed_gate_means_no_work(tmp_path: Path) -> None:
    proc = WorkloadProcess.spawn("hog", "cpu_hog", [], tmp_path)
    assert proc.stop() == 0
    assert not any(isinstance(r, Started) for r in proc.reports)


def test_a_workload_that_dies_at_start_is_a_one_line_error(tmp_path: Path) -> None:
    proc = WorkloadProcess.spawn("hog", "cpu_hog", ["--unit-iterations=many"], tmp_path)
    with pytest.raises(WorkloadError, match=r"^start workload hog: exited with status 2: ") as e:
        proc.wait_started(30)
    assert "\n" not in str(e.value)
    proc.stop()


@pytest.mark.parametrize(
    ("proc_cgroup", "expected"),
    [
        ("4:memory:/process_api/abc\n0::/\n", "memory/process_api/abc"),
        ("0::/kubepods.slice/pod1\n", "kubepods.slice/pod1"),
        ("1:cpu:/\n", None),
    ],
)
def test_memory_cgroup_dir(tmp_path: Path, proc_cgroup: str, expected: str | None) -> None:
    path = tmp_path / "cgroup"
    path.write_text(proc_cgroup)
    found = memory_cgroup_dir(path, Path("/sys/fs/cgroup"))
    assert found == (None if expected is None else Path("/sys/fs/cgroup") / expected)


@pytest.mark.parametrize(
    ("stat", "expected"),
    [("cache 10\ntotal_cache 4096\n", 4096), ("anon 5\nfile 8192\n", 8192), ("rss 1\n", None)],
)
def test_cgroup_cache_bytes(tmp_path: Path, stat: str, expected: int | None) -> None:
    (tmp_path / "memory.stat").write_text(stat)
    assert cgroup_cache_bytes(tmp_path) == expected
    assert cgroup_cache_bytes(tmp_path / "missing") is None


@pytest.mark.cgroup_v1
@requires_cgroup_v1
def test_cache_service_keeps_its_file_cached_in_its_own_cgroup(tmp_path: Path) -> None:
    from benchmarks._harness import pod
    from benchmarks._tree import build_tree

    online = pod("online", {"service": {"requests": {"memory": "64Mi"}}})
    with build_tree([online], 2000, 512 * MIB) as tree:
        proc = WorkloadProcess.spawn(
            "service",
            "cache_service",
            [f"--file={tmp_path / 'data'}", "--file-mib=16", "--anon-mib=8", "--report-every=0.2"],
            tmp_path,
            samples=True,
        )
        tree.place("online", "service", proc.pid)
        assert run_for(proc, 0.6) == 0
    intervals = list(iter_kind(proc.reports, CacheInterval))
    assert intervals[-1].cache_bytes is not None
    assert intervals[-1].cache_bytes >= 15 * MIB  # the whole file, charged to its cgroup
    samples = proc.samples()
    assert len(samples) > 100
    assert (tmp_path / "data").stat().st_size == 16 * MIB


def test_stop_all_ends_running_workloads_cleanly_and_stop_is_idempotent(tmp_path: Path) -> None:
    procs = [WorkloadProcess.spawn(f"hog-{i}", "cpu_hog", [], tmp_path) for i in range(2)]
    for proc in procs:
        proc.open_gate()
        proc.wait_started(30)
    assert stop_all(procs) == {"hog-0": 0, "hog-1": 0}  # one SIGTERM each, handled
    assert [proc.stop() for proc in procs] == [0, 0]
    for proc in procs:
        ended = [r for r in proc.reports if isinstance(r, Ended)]
        assert [e.reason for e in ended] == ["signal"]
