"""The benchmarks' arithmetic: batch rates from reports, and the target verdicts (pure)."""

from __future__ import annotations

import pytest

from benchmarks import bench_effectiveness, bench_memory_pressure
from lab.workloads import Started, Throughput, units_per_second

HOG = [
    Started(t=10.0, pid=1, workload="cpu-hog"),
    Throughput(t=10.1, units=10, cpu_s=0.1),
    Throughput(t=10.2, units=20, cpu_s=0.2),
    Throughput(t=10.3, units=25, cpu_s=0.3),
    Throughput(t=10.4, units=35, cpu_s=0.4),
]


@pytest.mark.parametrize(
    ("t0", "t1", "expected"),
    [
        (10.1, 10.4, 25 / 0.3),  # reports exactly at both ends
        (10.15, 10.35, 25 / 0.3),  # bracketed by the reports around the window
        (10.0, 10.2, 20 / 0.2),  # from its start (0 units)
        (10.2, 10.5, 15 / 0.2),  # nothing after the window: up to its last report
        (10.45, 10.6, None),  # nothing reported since the window began
    ],
)
def test_units_per_second(t0: float, t1: float, expected: float | None) -> None:
    rate = units_per_second(HOG, t0, t1)
    assert rate == (None if expected is None else pytest.approx(expected))


def test_the_cpu_a_hog_got_is_a_rate_of_its_cpu_time() -> None:
    assert units_per_second(HOG, 10.1, 10.4, cpu=True) == pytest.approx(1.0)
    assert units_per_second(HOG, 10.0, 10.2, cpu=True) == pytest.approx(1.0)  # from 0 at start


def _cpu_summary(colocd: tuple, kubelet: tuple, suppress: tuple) -> dict:
    def row(p99, p999, units):
        return {"latency_p99_us": p99, "latency_p999_us": p999, "batch_units_per_s": units}

    return {
        "alone": row(900, 3000, None),
        "kubelet": row(*kubelet),
        "static-suppress": row(*suppress),
        "colocd": row(*colocd),
    }


@pytest.mark.parametrize(
    ("colocd", "p99_met", "p999_met", "batch_met"),
    [
        ((2000, 5000, 1000), True, True, True),
        ((2000, 5000, 940), True, True, False),  # 94 % of kubelet's batch
        ((2000, 5000, 950), True, True, True),  # exactly 95 %
        ((4100, 5000, 1000), False, True, True),  # worse than the best static p99 (4000)
        ((2000, 7000, 1000), True, False, True),  # best static p99.9 is suppress's 6000
    ],
)
def test_effectiveness_verdict(colocd: tuple, p99_met: bool, p999_met: bool, batch_met: bool):
    summary = _cpu_summary(colocd, kubelet=(5000, 9000, 1000), suppress=(4000, 6000, 500))
    checks = bench_effectiveness.check_targets(summary)
    assert checks["latency_p99_us"]["met"] is p99_met
    assert checks["latency_p99_us"]["best_static_setup"] == "static-suppress"
    assert checks["latency_p999_us"]["met"] is p999_met
    assert checks["batch_throughput"]["met"] is batch_met
    assert checks["all_met"] is (p99_met and p999_met and batch_met)


def test_effectiveness_verdict_with_a_missing_reading_is_not_met() -> None:
    summary = _cpu_summary((None, 5000, 1000), kubelet=(5000, 9000, 1000), suppress=(4000, 6000, 0))
    checks = bench_effectiveness.check_targets(summary)
    assert checks["latency_p99_us"]["met"] is False
    assert checks["all_met"] is False


@pytest.mark.parametrize(
    ("p99", "p999", "cache_min", "met"),
    [
        (1400, 4000, 380, True),
        (1600, 4000, 380, False),  # p99 1.6x alone
        (1400, 4600, 380, False),  # p99.9 1.53x alone
        (1400, 4000, 350, False),  # kept 87.5 % of its cache
        (None, 4000, 380, False),  # no reading is no pass
        (1400, 4000, None, False),
    ],
)
def test_memory_verdict(p99: float, p999: float, cache_min: float, met: bool) -> None:
    def row(p99, p999, warm, kept):
        return {
            "latency_p99_us": p99,
            "latency_p999_us": p999,
            "online_cache_warm_mib": warm,
            "online_cache_min_mib": kept,
        }

    summary = {
        "alone": row(1000, 3000, 400, 398),
        "kubelet/1600MiB": row(9000, 30000, 400, 5),
        "colocd/1600MiB": row(p99, p999, 400, cache_min),
    }
    setups = [("alone", None), ("kubelet/1600MiB", 1600), ("colocd/1600MiB", 1600)]
    checks = bench_memory_pressure.check_targets(summary, setups)
    assert set(checks) == {"colocd/1600MiB", "all_met"}
    assert checks["colocd/1600MiB"]["met"] is met
    assert checks["all_met"] is met
