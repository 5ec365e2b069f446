"""benchmarks/bench_memory_hindsight.py: the hindsight reserve is the smallest safe one, and
the verdict follows from the figures it prints."""

from __future__ import annotations

import json
from pathlib import Path

from agent.sources.trace import read_trace
from benchmarks import bench_memory_hindsight as bench
from qos.replay import replay

STEP = str(Path(__file__).resolve().parents[1] / "examples" / "traces" / "step.csv")


def test_the_reserve_found_is_the_smallest_without_violation() -> None:
    rows = read_trace(STEP)
    found = bench.smallest_safe(rows, 0.0)
    assert found is not None and found.level == "current"
    assert replay(rows, bench.FixedReserve(0.0, found.reserve)).memory.seconds == 0
    less = found.reserve - bench.RESOLUTION
    assert replay(rows, bench.FixedReserve(0.0, less)).memory.seconds > 0
    # step.csv leaps by 31 % of the node after 40 calm minutes: nothing less holds it.
    assert 0.30 < found.reserve < 0.33


def test_a_longer_peak_never_needs_a_larger_reserve() -> None:
    rows = read_trace(STEP)
    reserves = [bench.smallest_safe(rows, w).reserve for w in bench.LEVELS.values()]
    assert reserves == sorted(reserves, reverse=True)


def test_the_run_writes_one_verdict_per_trace(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "hindsight.json"
    monkeypatch.setattr("sys.argv", ["bench", "--trace", STEP, "--out", str(out)])
    bench.main()
    (row,) = json.loads(out.read_text())
    assert row["trace"] == "step.csv" and len(row["hindsight"]) == len(bench.LEVELS)
    best = max(h["gib_hours"] for h in row["hindsight"])
    assert row["bar_within_reach"] is (best >= row["peer_gib_hours"])
    assert "step.csv" in capsys.readouterr().out
