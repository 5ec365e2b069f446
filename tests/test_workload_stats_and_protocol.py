"""Percentiles and the workloads' report/samples protocol (pure, no processes)."""

from __future__ import annotations

import io
import random
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import WorkloadError
from lab.workloads.protocol import (
    CacheInterval,
    Ended,
    MemoryGrowth,
    ProbeInterval,
    ReportReader,
    ReportWriter,
    RequestSample,
    Started,
    Throughput,
    read_samples,
    wait_for_gate,
    write_samples,
)
from lab.workloads.stats import LatencySummary, median, percentile, ratio_intervals

TEN = [float(v) for v in range(1, 11)]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        (TEN, 50, 5.0),
        (TEN, 90, 9.0),
        (TEN, 99, 10.0),
        (TEN, 100, 10.0),
        (TEN, 0.1, 1.0),
        ([7.0], 99.9, 7.0),
        ([], 50, None),
    ],
)
def test_nearest_rank_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_outside_range_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile(TEN, q)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300))
def test_summary_is_ordered_and_within_the_data(values: list[float]) -> None:
    s = LatencySummary.of(values)
    assert s.count == len(values)
    assert min(values) <= s.p50 <= s.p99 <= s.p999 <= s.max == max(values)


def test_summary_of_nothing_is_all_missing() -> None:
    assert LatencySummary.of([]) == LatencySummary(0, None, None, None, None)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 1.0, 2.0], 2.0),
        ([4.0, 1.0], 2.5),
        ([None, 5.0, None], 5.0),
        ([None], None),
        ([], None),
    ],
)
def test_median_skips_missing_readings(values, expected) -> None:
    assert median(values) == expected


REPORTS = [
    Started(t=1.0, pid=42, workload="latency-probe"),
    ProbeInterval(2.0, 500, 950.5, 2100.0, 300.0, 0.5),
    ProbeInterval(3.0, 0, None, None, None, 0.5),
    Throughput(t=2.5, units=1234, cpu_s=0.9),
    MemoryGrowth(t=3.5, anon_bytes=4 << 20, target_bytes=8 << 20),
    CacheInterval(4.0, 500, 40.0, 900.0, cache_bytes=400 << 20, disk_read_bytes=None),
    Ended(t=5.0, reason="signal"),
]


def _seconds(
    draw: random.Random, count: int, scale: float = 1.0, slow: float = 8.0
) -> list[list[float]]:
    """`count` seconds of 100 latencies each (us); a fifth of the seconds are `slow` times
    slower, as on a shared host."""
    out = []
    for _ in range(count):
        factor = scale * (slow if draw.random() < 0.2 else 1.0)
        out.append([factor * draw.expovariate(1 / 500) for _ in range(100)])
    return out


def _p99_ratio(base: list[list[float]], other: list[list[float]]) -> tuple[float, float]:
    (interval,) = ratio_intervals(base, other, (99,), rounds=200)
    assert interval is not None
    return interval


def test_without_a_difference_the_interval_holds_1_about_as_often_as_it_says() -> None:
    runs = [random.Random(seed) for seed in range(30)]
    spans = [_p99_ratio(_seconds(draw, 12), _seconds(draw, 12)) for draw in runs]
    held = [low <= 1 <= high for low, high in spans]
    assert sum(held) / len(held) >= 0.75  # a 90 % interval: 0.87 measured over 40 runs


def test_a_twofold_slowdown_is_told_from_mild_noise() -> None:
    runs = [random.Random(seed) for seed in range(30)]
    spans = [
        _p99_ratio(_seconds(draw, 12, slow=1.5), _seconds(draw, 12, 2.0, slow=1.5)) for draw in runs
    ]
    assert sum(low > 1 for low, _ in spans) / len(spans) >= 0.9


def test_the_same_seconds_scaled_have_the_scale_in_their_interval() -> None:
    base = _seconds(random.Random(7), 12)
    tripled = [[3 * v for v in s] for s in base]
    for low, high in ratio_intervals(base, tripled, (99, 50), rounds=200):
        assert low <= 3 <= high


def test_no_interval_without_values() -> None:
    assert ratio_intervals([], [[1.0]], (99,)) == (None,)
    assert ratio_intervals([[1.0]], [[], []], (99, 50)) == (None, None)


def test_reports_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    writer = ReportWriter.open(path)
    for report in REPORTS:
        writer.write(report)
    writer.close()
    assert ReportReader(path).read_new() == REPORTS


def test_reader_returns_only_complete_lines_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    reader = ReportReader(path)
    assert reader.read_new() == []  # not written yet
    stream = io.StringIO()
    ReportWriter(stream).write(REPORTS[0])
    ReportWriter(stream).write(REPORTS[3])
    text = stream.getvalue()
    cut = len(text) - 10
    path.write_text(text[:cut])
    assert reader.read_new() == [REPORTS[0]]
    with path.open("a") as f:
        f.write(text[cut:])
    assert reader.read_new() == [REPORTS[3]]
    assert reader.read_new() == []


@pytest.mark.parametrize(
    "line",
    ['{"kind":"nope","t":1}', '{"t":1}', "not json", '{"kind":"ended","t":1,"x":2}', "[1]"],
)
def test_garbage_report_is_a_one_line_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(WorkloadError, match=r"^read report .*r\.jsonl: bad line"):
        ReportReader(path).read_new()


def test_samples_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_samples(path, array("d", [10.0, 1.5, 900.0, 10.002, 0.0, 1200.25]))
    assert read_samples(path) == [
        RequestSample(10.0, 1.5, 900.0),
        RequestSample(10.002, 0.0, 1200.25),
    ]


def test_truncated_samples_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_samples(path, array("d", [1.0, 2.0]))
    with pytest.raises(WorkloadError, match="not whole triples"):
        read_samples(path)


@pytest.mark.parametrize(("stdin", "opened"), [("go\n", True), ("", False)])
def test_gate(stdin: str, opened: bool) -> None:
    assert wait_for_gate(io.StringIO(stdin)) is opened
