"""The benchmarks end to end at toy sizes: real workloads in real cgroups, the real agent
(`colocd run`) for the colocd setups, JSON out, no leftovers.

Not timed: the figures are not judged here (that is what `make bench` is for), only that
every setup ran, wrote what it claims to write, and cleaned up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isolation.detect import detect_hierarchy
from lab.kubelet_tree import own_cgroup
from tests.host_cgroups import requires_cgroup_v1

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.slow, requires_cgroup_v1]


def _bench_dirs() -> set[Path]:
    """Trees beneath this process's cgroup, in every hierarchy (where KubeletTree builds)."""
    hierarchy = detect_hierarchy()
    own = own_cgroup(hierarchy)
    return {p for mount in hierarchy.mounts().values() for p in (mount / own).glob("colocd-test-*")}


def _run(module: str, results: Path, *flags: str) -> dict:
    before = _bench_dirs()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", f"--results-dir={results}", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert _bench_dirs() == before  # every cgroup it made is gone
    return json.loads(next(results.glob("*.json")).read_text())


def test_effectiveness_runs_every_setup(tmp_path: Path) -> None:
    out = _run(
        "bench_effectiveness",
        tmp_path,
        "--duration=0.8",
        "--warmup=0.4",
        "--repeats=1",
        "--hogs=1",
    )
    summary = out["summary"]
    assert set(summary) == {"alone", "kubelet", "static-suppress", "colocd"}
    assert summary["alone"]["batch_units_per_s"] is None
    phases = {p["setup"]: p for p in out["phases"]}
    for setup in ("kubelet", "static-suppress", "colocd"):
        assert (summary[setup]["batch_units_per_s"] or 0) > 0, phases[setup]
        assert (summary[setup]["latency_p99_us"] or 0) > 0, phases[setup]
        assert set(phases[setup]["exit_codes"].values()) == {0}, phases[setup]
    writes = {p["setup"]: p["enforcement"]["writes"] for p in out["phases"]}
    assert writes["kubelet"] == {}
    assert "besteffort/cpu.cfs_quota_us" in writes["static-suppress"]
    # Read back: the real agent made every batch pod SCHED_IDLE, and left the besteffort
    # level (whose weight kubelet rewrites) as kubelet keeps it.
    idle = {k: v for k, v in writes["colocd"].items() if k.endswith("/cpu.idle")}
    assert idle.pop("besteffort/cpu.idle") == 0
    assert idle and set(idle.values()) == {1}, writes["colocd"]
    assert phases["colocd"]["enforcement"]["reason"].startswith("colocd after")
    assert {"latency_p99_us", "latency_p999_us", "batch_throughput"} <= set(out["targets"])


def test_memory_pressure_colocd_keeps_online_cache_and_batch_is_killed(tmp_path: Path) -> None:
    out = _run(
        "bench_memory_pressure",
        tmp_path,
        "--duration=1.5",
        "--repeats=1",
        "--node-mib=320",
        "--online-anon-mib=32",
        "--online-cache-mib=64",
        "--batch-mib=400",
        "--batch-rate-mib-s=800",
    )
    kubelet, colocd = out["summary"]["kubelet/400MiB"], out["summary"]["colocd/400MiB"]
    # 400 MiB cannot fit in a 320 MiB node: the OOM killer ends batch either way ...
    assert kubelet["batch_exits"] == ["SIGKILL (OOM-killed)"]
    assert colocd["batch_exits"] == ["SIGKILL (OOM-killed)"]
    assert kubelet["online_oom_kills"] == colocd["online_oom_kills"] == 0
    # ... but under kubelet's defaults batch first evicts online's cache; under colocd it
    # hits its own level's limit and online keeps its cache.
    assert kubelet["online_cache_min_mib"] < 0.5 * kubelet["online_cache_warm_mib"]
    assert colocd["online_cache_min_mib"] >= 0.9 * colocd["online_cache_warm_mib"]
    limit = next(p for p in out["phases"] if p["setup"] == "colocd/400MiB")["enforcement"]
    assert (
        colocd["batch_peak_mib"] * (1 << 20) <= limit["writes"]["besteffort/memory.limit_in_bytes"]
    )


def test_overhead_measures_the_real_agent_over_a_small_tree(tmp_path: Path) -> None:
    out = _run(
        "bench_overhead",
        tmp_path,
        "--pods=10",
        "--busy=1",
        "--warmup=1",
        "--duration=3",
    )
    result = out["result"]
    assert (result["pods"], result["containers"]) == (10, 30)
    assert result["ticks"] >= 2
    assert 0 < result["millicores"] < 1000
    assert 10 < result["rss_max_mib"] < 500
    assert set(out["targets"]) == {"millicores", "rss_mib", "all_met"}


def test_soak_churns_pods_edits_policies_and_leaks_nothing(tmp_path: Path) -> None:
    out = _run(
        "bench_soak",
        tmp_path,
        "--duration=16",
        "--warmup=2",
        "--churn-every=1",
        "--live=3",
        "--policy-every=4",
        "--surge-every=4",  # surges at 5, 9 and 13 s: two at least, with a slow churn
    )
    result = out["result"]
    assert result["pods_created"] >= 8
    assert result["pods_deleted"] + result["pods_evicted_by_colocd"] >= 5
    assert result["policy_edits"] >= 2 and result["surges"] >= 2
    assert result["ticks"] >= 5 and result["tick_ms_p99"] > 0
    assert result["agent_exit"] == 0
    # Nothing left behind as pods come and go: journal entries dropped with their cgroups.
    gone = (result["gone_entries"], result["gone_entries_log"])
    assert result["journal_entries_of_gone_cgroups"] == 0, gone
    assert result["journal_entries_after_stop"] == 0 and result["leaked_pod_cgroups"] == 0
    series = out["rss_mib_by_second"]
    assert len(series) >= 2 and all(mib > 10 for _, mib in series), series


def test_footprint_compares_the_dry_run_agent_with_no_agent(tmp_path: Path) -> None:
    out = _run(
        "bench_footprint",
        tmp_path,
        "--pods=2,4",
        "--duration=0.8",
        "--warmup=0.2",
        "--repeats=2",
        "--hogs=1",
        "--agent-ticks=1",
    )
    assert set(out["summary"]) == {"2", "4"}
    for row in out["summary"].values():
        for setup in ("agent", "none"):
            s = row[setup]
            assert s["windows"] == 2 and s["wakeups"] > 100, s  # ~1000 wake-ups a second
            assert 0 < s["p50_us"] <= s["p99_us"] <= s["p999_us"], s
            low, high = s["p99_us_range"]
            assert low <= high, s
            assert s["outside_cores_range"] is not None, s  # how busy the rest of the machine was
        assert row["none"]["agent_millicores"] is None
        assert row["agent"]["agent_millicores"] is not None, row
        assert row["agent"]["agent_tick_ms"] is not None, row
        assert row["added_p99"] is not None and len(row["added_p99_per_round"]) == 2
    # Interleaved: each round has both setups, the first flipping from round to round.
    firsts = [w["setup"] for w in out["windows"] if w["pods"] == 2][::2]
    assert firsts == ["agent", "none"]
    assert {w["pods"] for w in out["windows"]} == {2, 4}
