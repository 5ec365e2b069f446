"""colocd against its peers on every shipped trace, pinned: a regression of the brain (more
violation time, less reclaim, a bar that held and no longer does) fails here.

The bar (qos/compare.py), per resource: no more violation seconds than the safest peer, and
at least the reclaim of every peer with no more violation seconds. It holds on every trace
for CPU, and for memory only on the traces not in MISSED, each miss with its reason; the facts that
make step's and bursty's memory bars exclusive are checked on the traces below, so a changed
trace that removes the reason fails here too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.commands.simulate import TraceReport, compare_trace, trace_files
from agent.sources.trace import read_trace
from qos.baselines import Oracle
from qos.replay import (
    GIB,
    ColocdPolicy,
    Offer,
    ReplayResult,
    TraceRow,
    Truth,
    at_tick,
    replay,
    truths,
)
from qos.settings import DEFAULT_QOS_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "examples" / "traces"

# trace: (core-h, GiB-h, CPU violation s, memory violation s), with the default settings.
PINNED = {
    "alibaba2018_m_1934.csv": (610.3, 554.2, 0.0, 0.0),
    "alibaba2018_m_1940.csv": (1214.0, 495.5, 80.0, 0.0),
    "alibaba2018_m_1942.csv": (864.2, 458.8, 0.0, 0.0),
    "alibaba2018_m_1945.csv": (1272.9, 625.3, 0.0, 0.0),
    "bitbrains_rnd_vm185.csv": (18.9, 417.1, 0.0, 300.0),
    "bitbrains_rnd_vm28.csv": (1019.8, 6551.0, 0.0, 0.0),
    "bitbrains_rnd_vm392.csv": (0.2, 227.5, 0.0, 0.0),
    "bitbrains_rnd_vm420.csv": (164.1, 180.7, 0.0, 0.0),
    "bursty.csv": (0.0, 171.6, 0.0, 0.0),
    "diurnal.csv": (307.3, 1687.3, 0.0, 0.0),
    "noisy.jsonl": (0.0, 64.9, 0.0, 0.0),
    "step.csv": (5.5, 79.0, 0.0, 5.0),
}

# The bars that do not hold (all of them memory: the CPU bar holds on every trace), and why.
MISSED = {
    ("step.csv", "memory"): "memory leaps by a third of the node after 40 calm minutes; every "
    "peer but Koordinator (nothing offered for 24 h) misses it too. bursty's memory is "
    "noisier, and holding that much free through its first 40 min costs more than all its "
    "slack over Katalyst (test_step_and_bursty_memory_ask_opposite_things)",
    ("bitbrains_rnd_vm392.csv", "memory"): "less reclaim than Volcano, whose 40 % of free memory "
    "clears the peak by 0.4 % of the node; a window peak plus an allowance known in advance "
    "reclaims as much only with the first hour held and a reserve over the 24-h peak of 3.2 "
    "to 3.5 % of the node, the largest rise above it being 3.2 % at 8.8 h "
    "(bench_memory_hindsight)",
}


@pytest.fixture(scope="module")
def rows() -> dict[str, list[TraceRow]]:
    return {Path(f).name: read_trace(f) for f in trace_files([str(TRACES)])}


@pytest.fixture(scope="module")
def reports(rows) -> dict[str, TraceReport]:
    return {name: compare_trace(name, r, DEFAULT_QOS_SETTINGS) for name, r in rows.items()}


def test_every_shipped_trace_is_pinned(reports):
    assert sorted(reports) == sorted(PINNED)
    assert {trace for trace, _ in MISSED} <= set(PINNED)


def assert_no_worse_than_pinned(ours: ReplayResult, trace: str) -> None:
    core_h, gib_h, cpu_v, mem_v = PINNED[trace]
    assert ours.name == "colocd"
    assert ours.cpu.seconds <= cpu_v and ours.memory.seconds <= mem_v
    # Pinned to 0.1: 1 % or 0.1 below is still no regression (float noise, rounding).
    assert ours.reclaimed_core_hours >= min(0.99 * core_h, core_h - 0.1)
    assert ours.reclaimed_gib_hours >= min(0.99 * gib_h, gib_h - 0.1)


@pytest.mark.parametrize("trace", sorted(PINNED))
def test_colocd_is_no_worse_than_pinned(reports, trace):
    assert_no_worse_than_pinned(reports[trace].results[0], trace)


@pytest.mark.parametrize("trace", sorted(PINNED))
def test_the_bar_holds_on_every_trace_but_the_listed_misses(reports, trace):
    for bar in reports[trace].bars:
        if (trace, bar.resource) not in MISSED:
            assert bar.holds, bar.line()


def test_the_cpu_bar_holds_on_every_trace():
    assert all(resource == "memory" for _, resource in MISSED)


@pytest.mark.parametrize("trace", sorted(PINNED))
def test_colocd_misses_no_rise_of_memory_a_peer_catches(reports, trace):
    """Memory is not compressible: beyond the bar, colocd has no memory violation at all
    where any peer has none."""
    results = reports[trace].results
    peers = results[1:-1]
    if min(p.memory.seconds for p in peers) == 0 and (trace, "memory") not in MISSED:
        assert results[0].memory.seconds == 0


@pytest.mark.parametrize("trace", sorted(PINNED))
def test_the_oracle_bounds_every_policy_that_never_violated(reports, trace):
    results = reports[trace].results
    oracle = results[-1]
    assert oracle.name == "oracle" and oracle.cpu.seconds == 0 and oracle.memory.seconds == 0
    for r in results[:-1]:
        if r.cpu.seconds == 0:
            assert r.reclaimed_core_hours <= oracle.reclaimed_core_hours + 1e-6, r.name
        if r.memory.seconds == 0:
            assert r.reclaimed_gib_hours <= oracle.reclaimed_gib_hours + 1e-6, r.name


def _share(rows: list[TraceRow], cpu: bool) -> list[tuple[float, float]]:
    """(hours from the start, online + system use as a share of the node) per row."""
    start = rows[0].t
    out = []
    for row, t in zip(rows, truths(rows), strict=True):
        use, cap = (
            (t.online_cpu + t.system_cpu, t.cpu_cap)
            if cpu
            else (t.online_mem + t.system_mem, t.mem_cap)
        )
        out.append(((row.t - start) / 3600, use / cap))
    return out


def _oracle(rows: list[TraceRow]) -> Iterator[tuple[Offer, Truth]]:
    """The oracle's offer (each row's idle capacity) beside the row's truth."""
    return zip(Oracle(rows).idle, truths(rows), strict=True)


def test_step_and_bursty_memory_ask_opposite_things(rows, reports):
    step = _share(rows["step.csv"], cpu=False)
    calm = [s for h, s in step if h < 0.66]
    rises = [b - a for a, b in itertools.pairwise(calm)]
    leap = next(s for h, s in step if h >= 0.66 and s > 0.4) - calm[-1]
    assert max(rises) < 0.02 and leap > 0.3  # 40 calm minutes, then a third of the node
    bursty = _share(rows["bursty.csv"], cpu=False)
    early = [s for h, s in bursty if h < 0.66]
    assert max(b - a for a, b in itertools.pairwise(early)) > max(rises)  # bursty is noisier
    katalyst, oracle = reports["bursty.csv"].results[4], reports["bursty.csv"].results[-1]
    assert katalyst.name == "katalyst" and katalyst.memory.seconds == 0
    slack = oracle.reclaimed_gib_hours - katalyst.reclaimed_gib_hours
    cap_gib = rows["bursty.csv"][0].memory_capacity_bytes / GIB
    # Batch there never wants more than the oracle offers, so every GiB held back is lost.
    assert all(p.memory_bytes <= t.batch_mem_demand for p, t in _oracle(rows["bursty.csv"]))
    assert leap * cap_gib * 0.66 > slack  # holding step's leap free for 40 min costs more


def _per_second(rows: list[TraceRow], start_h: float, end_h: float) -> list[TraceRow]:
    """The rows from `start_h` to `end_h` (hours from the trace's start) resampled to one a
    second, each reading held until the next: the agent's own 1-s tick."""
    t0 = rows[0].t
    span = [r for r in rows if start_h * 3600 <= r.t - t0 < end_h * 3600]
    out = []
    for row, nxt in itertools.pairwise(span):
        out += [row._replace(t=float(t)) for t in range(int(row.t), int(nxt.t))]
    return out


@pytest.mark.parametrize(
    ("per_second", "ratio", "violates"), [(True, 4.0, False), (False, 0.0, True)]
)
def test_the_regime_change_catches_vm185_at_a_1_s_tick_too(rows, per_second, ratio, violates):
    """5.5 h to 8 h of vm185: calm, the rise to 13 %, the leap to 96 % 300 s later. At the
    agent's 1-s tick the regime change holds it; without it (at the trace's own 300 s, which
    is quicker to replay) the leap is a violation."""
    vm185 = rows["bitbrains_rnd_vm185.csv"]
    if per_second:
        trace = _per_second(vm185, 5.5, 8.0)
    else:
        trace = [r for r in vm185 if 5.5 * 3600 <= r.t - vm185[0].t < 8 * 3600]
    predictor = DEFAULT_QOS_SETTINGS.predictor.model_copy(update={"regime_ratio": ratio})
    settings = DEFAULT_QOS_SETTINGS.model_copy(update={"predictor": predictor})
    result = replay(trace, ColocdPolicy(settings))
    assert result.reclaimed_core_hours > 1.0  # it offered the calm hours' CPU
    assert (result.cpu.seconds > 0) is violates, result.cpu


@pytest.mark.parametrize("trace", ["bursty.csv", "noisy.jsonl", "step.csv"])
def test_at_the_agents_1_s_tick_colocd_holds_its_figures_and_bars(rows, trace):
    """The short traces (2-5-s rows) replayed at the agent's own tick, every policy asked
    every second: colocd violates no longer and reclaims as much as at the traces' rows, and
    each bar holds or misses as it does there. (`colocd simulate --tick 1` does the same on
    the 72-h traces in minutes each; the README gives those figures.)"""
    report = compare_trace(trace, at_tick(rows[trace], 1), DEFAULT_QOS_SETTINGS)
    assert_no_worse_than_pinned(report.results[0], trace)
    for bar in report.bars:
        assert bar.holds is ((trace, bar.resource) not in MISSED), bar.line()
