"""The replay and the peers' formulas, checked by hand on tiny traces."""

from __future__ import annotations

import pytest

from qos.baselines import Crane, Koordinator
from qos.replay import ColocdPolicy, Offer, ReplayResult, TraceRow, compare, erlang_c, replay
from qos.settings import QosSettings

GIB = 1024**3


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: waiting probability is the utilisation
        (2, 1.0, 1 / 3),
        (4, 0.0, 0.0),
        (3, 3.0, 1.0),
        (0.5, 0.2, 1.0),
    ],
)
def test_erlang_c(servers, load, expected):
    assert erlang_c(servers, load) == pytest.approx(expected)


def test_erlang_c_interpolates_between_whole_server_counts():
    assert erlang_c(2.5, 1.0) == pytest.approx((erlang_c(2, 1.0) + erlang_c(3, 1.0)) / 2)


class Fixed:
    """A policy that always offers the same, to check the replay's accounting."""

    name = "fixed"

    def __init__(self, cpu: float, memory: float = 0.0) -> None:
        self.offer = Offer(cpu, memory)

    def start(self) -> None:
        return None

    def step(self, state, obs):
        return self.offer, state


def rows(online, *, cap=10_000.0, batch=10_000.0, step=10.0):
    return [TraceRow(i * step, cap, o, batch, 0.0) for i, o in enumerate(online)]


def test_replay_accounting_by_hand():
    # Offer 4 cores from the second row on; online needs 5, then 7 (> 10 - 4), then 5.
    result = replay(rows([5000, 7000, 5000]), Fixed(4000))
    assert result.duration_seconds == 30
    assert result.reclaimed_core_hours == pytest.approx(4 * 20 / 3600)
    assert result.violation_seconds == 10 and result.cpu_violation_seconds == 10
    # idle: 5, 3, 5 cores; offered min(4, idle): 0 (first row), 3, 4
    assert result.offered_idle_fraction == pytest.approx((3 + 4) / (5 + 3 + 5))


def test_batch_takes_no_more_than_it_demands_and_nothing_is_a_violation_without_batch():
    result = replay(rows([12_000, 12_000], batch=0.0), Fixed(4000))
    assert result.reclaimed_core_hours == 0 and result.violation_seconds == 0


def test_koordinator_usage_formula_and_suppress():
    # cap 10 cores, online 2 cores: usage policy 10 - 4 - 0 - 2 = 4 cores;
    # suppress 10 x 0.65 - 2 = 4.5 cores; offer = min = 4 cores.
    k = Koordinator()
    s = k.start()
    trace = rows([2000] * 3)
    from qos.replay import Observation

    obs = Observation(10.0, 10_000, 0.0, 2000.0, 0.0, 0.0, None, None, None, None)
    offer, s = k.step(s, obs)
    assert offer.cpu_milli == pytest.approx(4000)
    assert replay(trace, Koordinator()).reclaimed_core_hours == pytest.approx(4 * 20 / 3600)


def test_crane_reserve_plus_max_of_predicted_and_current():
    # cap 10 cores, reserve 10 %: 9 - max(p99, current) with online + system = 3 cores.
    result = replay(rows([3000] * 4), Crane())
    assert result.reclaimed_core_hours == pytest.approx(6 * 30 / 3600)


def test_colocd_replay_uses_decide_and_reacts_to_a_surge_next_row():
    trace = rows([1000] * 30 + [6000] * 30, step=1.0)
    result = replay(trace, ColocdPolicy(QosSettings()))
    assert result.reclaimed_core_hours > 0
    assert result.cpu_violation_seconds <= 1  # only the row of the surge itself


def test_compare_in_words():
    def res(name, core_h, viol):
        return ReplayResult(name, 1.0, core_h, 0.0, 0.0, 0.0, viol, viol, 0.0, 0.0)

    v = compare(res("colocd", 5, 0), res("peer", 4, 2))
    assert v.dominates and "better or equal on both" in v.line
    v = compare(res("colocd", 3, 0), res("peer", 4, 2))
    assert not v.dominates and v.cpu == "less reclaim, fewer violations"
    assert compare(res("colocd", 5, 3), res("peer", 4, 2)).cpu == "more reclaim, more violations"
