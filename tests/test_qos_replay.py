"""The replay and the peers' formulas, checked by hand on tiny traces."""

from __future__ import annotations

import pytest

from qos.baselines import Crane, Katalyst, Koordinator, KoordinatorParams, Oracle, Volcano
from qos.replay import ColocdPolicy, Observation, Offer, TraceRow, at_tick, erlang_c, replay
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


def test_at_tick_cuts_each_row_into_ticks_that_hold_its_readings():
    trace = [
        TraceRow(0, 10_000, 2000, 1000),
        TraceRow(10, 10_000, 5000, 1000),
        TraceRow(25, 10_000, None, 1000),  # a missing reading stays missing in every piece
    ]
    ticked = at_tick(trace, 4)
    assert [r.t for r in ticked] == [0, 4, 8, 10, 14, 18, 22, 25, 29, 33, 37]
    assert [r.online_cpu_milli for r in ticked] == [2000] * 3 + [5000] * 4 + [None] * 4
    assert at_tick(trace, 15) == trace  # no row longer than a tick: nothing to cut
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tick"):
            at_tick(trace, bad)


def test_at_tick_a_fixed_offer_counts_the_same_but_starts_a_tick_after_the_start():
    trace = rows([5000, 7000, 5000])
    whole, ticked = replay(trace, Fixed(4000)), replay(at_tick(trace, 1), Fixed(4000))
    assert ticked.duration_seconds == whole.duration_seconds == 30
    assert ticked.cpu == whole.cpu  # the row that violates is violated through, either way
    # The first decision comes after one tick, not one row: 9 s more of 4 cores.
    assert ticked.reclaimed_core_hours == pytest.approx(whole.reclaimed_core_hours + 4 * 9 / 3600)


class Follow:
    """Offers what online left the last time, less 1 core: it backs off a core a decision
    while online is short (what it is short of cannot be seen)."""

    name = "follow"

    def start(self) -> None:
        return None

    def step(self, state, obs):
        return Offer(max(0.0, obs.cpu_capacity_milli - obs.online_cpu_milli - 1000), 0.0), state


def test_at_tick_a_miss_lasts_until_the_decisions_catch_up_not_a_whole_row():
    trace = rows([2000, 2000, 6000, 6000], step=300.0)  # online leaps by 4 cores at 600 s
    whole, ticked = replay(trace, Follow()), replay(at_tick(trace, 1), Follow())
    # 7 cores offered, then 6, then 5: short 3, 2, 1 core, a row each or a tick each
    assert whole.cpu.seconds == 600 and whole.cpu.worst_shortfall == 3000  # and still short
    assert ticked.cpu.seconds == 3 and ticked.cpu.worst_shortfall == 3000


def test_batch_takes_no_more_than_it_demands_and_nothing_is_a_violation_without_batch():
    result = replay(rows([12_000, 12_000], batch=0.0), Fixed(4000))
    assert result.reclaimed_core_hours == 0 and result.violation_seconds == 0


def test_koordinator_counts_the_request_in_cold_start_then_p95_times_1_1():
    # 10 cores, use 2 cores throughout: nothing in the first 24 h (request = the node),
    # then 10 - 1.1 x p95 (the end of the histogram bucket holding 2 cores).
    p = KoordinatorParams(cold_start_seconds=600.0)
    result = replay(rows([2000] * 20, step=60.0), Koordinator(p), series=True)
    offers = [pt.cpu_offer_milli for pt in result.series]
    assert offers[:10] == [0.0] * 10
    assert 7650 <= offers[-1] <= 7750  # 10 - 1.1 x ~2.07 cores (the bucket's end)
    assert result.cpu_violation_seconds == 0


def test_volcano_offers_60_percent_of_the_idle_weighted_towards_the_newest():
    trace = rows([2000, 2000, 6000, 6000], cap=20_000.0, batch=20_000.0, step=10.0)
    offers = [pt.cpu_offer_milli for pt in replay(trace, Volcano(), series=True).series]
    assert offers[1] == pytest.approx(0.6 * 18_000)
    assert offers[3] == pytest.approx(0.6 * (20_000 - 4000))  # history (2 + 6) / 2


def test_katalyst_grows_the_pool_at_most_10_cores_a_step_and_shrinks_at_most_2():
    k = Katalyst()
    assert k._adjust(10_000.0, 10_000.0, 96_000.0) - 10_000.0 <= 10_000.0
    assert 10_000.0 - k._adjust(10_000.0, 100.0, 96_000.0) == pytest.approx(2000.0)
    assert k._adjust(10_000.0, 8000.0, 96_000.0) == 10_000.0  # at target: dead band


def test_katalyst_memory_keeps_its_reserve_and_publishes_at_least_its_floor():
    k = Katalyst()
    gib = 1024**3
    obs = Observation(
        t=5.0,
        cpu_capacity_milli=96_000.0,
        memory_capacity_bytes=64.0 * gib,
        online_cpu_milli=95_000.0,
        system_cpu_milli=0.0,
        batch_cpu_milli=0.0,
        online_memory_bytes=40.0 * gib,
        system_memory_bytes=0.0,
        batch_memory_bytes=0.0,
        online_cpu_psi=None,
    )
    offer, _ = k.step(k.start(), obs)
    # 64 - 5 (ReservedResourceForAllocate) - 40 x 1.1 = 15 GiB; CPU at its 4-core floor.
    assert offer.memory_bytes == pytest.approx(15.0 * gib)
    assert offer.cpu_milli == 4000.0
    full, _ = k.step(k.start(), obs._replace(online_memory_bytes=60.0 * gib))
    assert full.memory_bytes == 5.0 * gib  # MinReclaimedResourceForReport, however full


def test_crane_reserve_plus_max_of_predicted_and_current():
    # cap 10 cores, reserve 10 %: 9 - max(p99, current) with online + system = 3 cores.
    result = replay(rows([3000] * 4), Crane())
    assert result.reclaimed_core_hours == pytest.approx(6 * 30 / 3600)


def test_the_oracle_offers_the_next_rows_idle_and_never_violates():
    trace = rows([5000, 7000, 5000, 9000])
    oracle = replay(trace, Oracle(trace))
    assert oracle.cpu_violation_seconds == 0
    assert oracle.reclaimed_core_hours == pytest.approx((3 + 5 + 1) * 10 / 3600)


def test_violations_count_episodes_and_the_worst_shortfall():
    result = replay(rows([5000, 7000, 8000, 5000, 7000]), Fixed(4000))
    assert result.cpu.count == 2 and result.cpu.seconds == 30
    assert result.cpu.worst_shortfall == pytest.approx(2000)


def test_colocd_replay_uses_decide_and_reacts_to_a_surge_next_row():
    trace = rows([1000] * 30 + [6000] * 30, step=1.0)
    # A node watched long enough for the cold start to have faded.
    settings = QosSettings(predictor={"cold_start_seconds": 0})
    result = replay(trace, ColocdPolicy(settings))
    assert result.reclaimed_core_hours > 0
    assert result.cpu_violation_seconds <= 1  # only the row of the surge itself
