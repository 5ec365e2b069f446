"""colocd against its peers on every shipped trace, pinned: a regression of the brain (more
violation time, less reclaim, a bar that held and no longer does) fails here.

The bar (qos/compare.py), per resource: no more violation seconds than the safest peer, and
at least the reclaim of every peer with no more violation seconds. Where it does not hold
yet, the pinned figures still keep colocd from getting worse.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.commands.simulate import TraceReport, compare_trace, trace_files
from agent.sources.trace import read_trace
from qos.settings import DEFAULT_QOS_SETTINGS

ROOT = Path(__file__).resolve().parent.parent

# trace: (core-h, GiB-h, CPU violation s, memory violation s, resources whose bar holds),
# measured with the default settings.
PINNED = {
    "alibaba2018_m_1934.csv": (610.3, 86.7, 0.0, 120.0, ("cpu",)),
    "alibaba2018_m_1940.csv": (1214.0, 436.9, 80.0, 0.0, ("cpu", "memory")),
    "alibaba2018_m_1942.csv": (864.2, 216.5, 0.0, 30.0, ("cpu",)),
    "alibaba2018_m_1945.csv": (1272.9, 381.0, 0.0, 0.0, ("cpu", "memory")),
    "bitbrains_rnd_vm185.csv": (35.5, 605.4, 300.0, 900.0, ("memory",)),
    "bitbrains_rnd_vm28.csv": (1019.8, 6495.3, 0.0, 0.0, ("cpu", "memory")),
    "bitbrains_rnd_vm392.csv": (0.2, 339.8, 0.0, 0.0, ("cpu",)),
    "bitbrains_rnd_vm420.csv": (164.1, 224.7, 0.0, 0.0, ("cpu", "memory")),
    "bursty.csv": (0.0, 149.9, 0.0, 0.0, ("cpu",)),
    "diurnal.csv": (307.3, 1695.7, 0.0, 60.0, ("cpu",)),
    "noisy.jsonl": (0.0, 49.8, 0.0, 0.0, ("cpu",)),
    "step.csv": (5.5, 62.3, 0.0, 5.0, ("cpu",)),
}


@pytest.fixture(scope="module")
def reports() -> dict[str, TraceReport]:
    files = trace_files([str(ROOT / "examples" / "traces")])
    out = {}
    for f in files:
        name = Path(f).name
        out[name] = compare_trace(name, read_trace(f), DEFAULT_QOS_SETTINGS)
    return out


def test_every_shipped_trace_is_pinned(reports):
    assert sorted(reports) == sorted(PINNED)


@pytest.mark.parametrize("trace", sorted(PINNED))
def test_colocd_is_no_worse_than_pinned(reports, trace):
    core_h, gib_h, cpu_v, mem_v, holds = PINNED[trace]
    report = reports[trace]
    ours = report.results[0]
    assert ours.name == "colocd"
    assert ours.cpu.seconds <= cpu_v and ours.memory.seconds <= mem_v
    # Pinned to 0.1: 1 % or 0.1 below is still no regression (float noise, rounding).
    assert ours.reclaimed_core_hours >= min(0.99 * core_h, core_h - 0.1)
    assert ours.reclaimed_gib_hours >= min(0.99 * gib_h, gib_h - 0.1)
    held = tuple(b.resource for b in report.bars if b.holds)
    assert set(held) >= set(holds), [b.line() for b in report.bars]


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
