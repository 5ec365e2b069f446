"""The sliding-window predictor: percentiles, expiry, and max(current, percentile)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qos.predictor import Series, Window, predict
from qos.settings import PredictorSettings


def _fill(values, window_seconds=300.0, max_samples=3600, step=1.0):
    w = Window()
    for i, v in enumerate(values):
        w = w.add(i * step, v, window_seconds, max_samples)
    return w


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(0.01, 1.0),
    st.integers(1, 120),
)
def test_percentile_matches_nearest_rank_over_the_kept_samples(values, q, window):
    w = _fill(values, window_seconds=float(window))
    kept = values[-window:]
    assert list(w.values) == kept
    ordered = sorted(kept)
    assert w.percentile(q) == ordered[max(1, math.ceil(q * len(ordered))) - 1]
    assert list(w.ordered) == ordered


def test_old_samples_leave_the_window_by_time():
    w = _fill([5.0, 1.0, 1.0, 1.0], window_seconds=2.5)
    assert w.values == (1.0, 1.0, 1.0)
    assert w.peak == 1.0


def test_a_window_longer_than_its_samples_keeps_the_highest_reading_of_each_bucket():
    # 8 s in at most 4 samples: readings 1 s apart join in 2-s buckets, the higher kept.
    w = _fill([3.0, 1.0, 2.0, 5.0, 4.0, 0.5, 7.0], window_seconds=8.0, max_samples=4)
    assert w.times == (0.0, 2.0, 4.0, 6.0) and w.values == (3.0, 5.0, 4.0, 7.0)
    assert w.ordered == (3.0, 4.0, 5.0, 7.0)
    # A bucket leaves the window with its first reading.
    w = w.add(9.0, 1.0, 8.0, 4)
    assert w.times == (2.0, 4.0, 6.0, 9.0) and w.peak == 7.0 and len(w.ordered) == 4


def test_a_reading_seen_again_is_not_counted_twice():
    w = Window().add(1.0, 4.0, 300, 100)
    assert w.add(1.0, 4.0, 300, 100) is w
    assert w.add(0.5, 9.0, 300, 100) is w


def _series(values, step=1.0, **overrides):
    settings = PredictorSettings(**overrides)
    series = Series()
    for i, v in enumerate(values):
        series = series.observe(i * step, v, settings)
    return series, settings


def test_prediction_is_max_of_current_and_level_plus_the_largest_rise_seen():
    # Level 10 for 19 s, then a rise of 90 above it: the allowance is 90 x 1.5.
    series, s = _series([10.0] * 19 + [100.0], percentile=1.0)
    p = predict(series, 50.0, 19.0, 0.0, s)
    assert p.level == 100.0 and p.learned == 90.0
    assert p.value == 100.0 + 90.0 * s.burst_factor
    assert "largest rise" in p.describe(s, str)


def test_the_learned_rise_fades_with_its_half_life():
    series, s = _series([10.0, 30.0], burst_half_life_seconds=10.0)
    assert predict(series, 30.0, 11.0, 0.0, s).learned == 20.0 * 0.5


def test_the_cold_start_fades_linearly_and_gives_way_to_evidence():
    series, s = _series([10.0], cold_start_seconds=100.0)
    assert predict(series, 10.0, 0.0, 40.0, s).burst == 40.0
    assert predict(series, 10.0, 50.0, 40.0, s).burst == 20.0
    p = predict(series, 10.0, 200.0, 40.0, s)
    assert p.burst == 0.0 and p.value == 10.0
    assert "cold start" in predict(series, 10.0, 0.0, 40.0, s).describe(s, str)


def test_missing_current_falls_back_to_the_window_peak_and_nothing_is_unknown():
    series, s = _series([1.0, 7.0, 3.0], cold_start_seconds=0.0, burst_factor=1.0)
    assert predict(series, None, 2.0, 0.0, s).value == pytest.approx(7.0 + 6.0)  # peak + rise
    assert predict(Series(), None, 0.0, 0.0, s).value is None
    assert predict(Series(), 3.0, 0.0, 0.0, s).value == 3.0


def _regime_series(rise, at=200.0, **overrides):
    """Level 10 with a rise of 1 seen early, then `rise` above the level at `at` (s)."""
    settings = PredictorSettings(cold_start_seconds=100.0, **overrides)
    series = Series()
    for t, v in ((0.0, 10.0), (1.0, 11.0), (2.0, 10.0), (at, 10.0 + rise)):
        series = series.observe(t, v, settings, capacity=100.0)
    return series, settings


def test_a_rise_far_past_the_record_is_a_regime_change_that_holds_everything_back():
    # A rise to 30 after a record of 1 (19 above the peak: over 4x, and over 5 % of capacity
    # 100): the whole capacity is held back, fading over the cold-start time like a new
    # node's allowance.
    series, s = _regime_series(20.0)
    assert series.regime_at == 200.0
    p = predict(series, 30.0, 200.0, 0.0, s, capacity=100.0)
    assert p.regime == 100.0 and p.value == 30.0 + 100.0
    assert "regime change" in p.describe(s, str)
    assert predict(series, 30.0, 250.0, 0.0, s, capacity=100.0).regime == 50.0
    later = predict(series, 30.0, 400.0, 0.0, s, capacity=100.0)
    # Then the rise itself (19 above the peak of 11), learned, is the allowance.
    assert later.regime == 0.0 and later.burst == later.learned * s.burst_factor
    assert later.learned == pytest.approx(19.0, rel=0.01)


@pytest.mark.parametrize(
    ("rise", "at", "why"),
    [
        (3.5, 200.0, "under 4x the largest rise seen"),
        (4.5, 200.0, "over 4x, but under 5 % of capacity"),
        (20.0, 50.0, "within the cold start, whose own allowance covers a new node"),
    ],
)
def test_no_regime_change(rise, at, why):
    series, _ = _regime_series(rise, at, regime_min_fraction=0.05)
    assert series.regime_at is None, why


def test_memory_has_its_own_window_allowance_and_cold_start():
    s = PredictorSettings()
    m = s.for_memory()
    assert (m.window_seconds, m.burst_factor, m.step_factor) == (86400.0, 0.0, 1.8)
    assert m.cold_start_seconds == 3600.0
    assert (s.window_seconds, s.burst_factor, s.step_factor) == (10800.0, 1.5, 0.0)
    assert s.cold_start_seconds == 7200.0 and m.regime_ratio == s.regime_ratio


def _one_place(v: float) -> str:
    return f"{v:.1f}"


def _memory_series(values):
    """A minute apart, with no cold start."""
    settings = PredictorSettings(cold_start_memory_seconds=0.0).for_memory()
    series = Series()
    for i, v in enumerate(values):
        series = series.observe(i * 60.0, v, settings)
    return series, settings


def test_memory_demand_is_the_peak_or_the_current_reading_plus_its_largest_step_to_a_peak():
    # 50 -> 60 is a step of 10 to a new peak; 20 -> 40 is a step of 20 that stays under the
    # peak, and cannot hurt: only the 10 is learned.
    series, m = _memory_series([50.0, 60.0, 20.0, 40.0])
    assert series.step == pytest.approx(10.0, rel=1e-3) and series.burst == series.step
    at = 3 * 60.0
    low = predict(series, 40.0, at, 0.0, m)
    assert low.value == 60.0 and not low.from_current  # the peak is the higher
    assert low.describe(m, _one_place) == (
        "peak 60.0 of 24 h (4 samples), above current 40.0 + burst 18.0 (1.8 x "
        "10.0, the largest step to a new peak seen, half-life 168 h)"
    )
    series, m = _memory_series([50.0, 60.0, 20.0, 55.0])
    near = predict(series, 55.0, at, 0.0, m)
    assert near.value == pytest.approx(55.0 + 1.8 * 10.0, rel=1e-3) and near.from_current
    assert near.describe(m, _one_place).startswith("current 55.0 + burst 18.0 (1.8 x 10.0, the")


def test_a_step_to_a_new_peak_is_measured_from_the_reading_before_it():
    # The peak is 60; 30 -> 65 rises 5 above it, but in one step of 35, and 35 is learned.
    series, m = _memory_series([60.0, 30.0, 65.0])
    assert (series.step, series.burst) == pytest.approx((35.0, 5.0), rel=1e-3)
    missing = predict(series, None, 120.0, 0.0, m)  # the peak stands in for the reading
    assert missing.value == pytest.approx(65.0 + 1.8 * 35.0, rel=1e-3)


def test_memorys_cold_start_rides_on_both_the_peak_and_the_current_reading():
    settings = PredictorSettings(
        cold_start_memory_seconds=100.0, cold_start_memory_gap_seconds=1.0
    ).for_memory()
    series = Series().observe(0.0, 10.0, settings).observe(1.0, 4.0, settings)
    p = predict(series, 4.0, 50.0, 40.0, settings)
    assert p.cold == 20.0 and p.value == 10.0 + 20.0
    assert p.describe(settings, str).endswith("cold start 20.0 (fading to 0 over 0.0277778 h)")


def _read_every(seconds: float, values, settings: PredictorSettings) -> Series:
    series = Series()
    for i, v in enumerate(values):
        series = series.observe(i * seconds, v, settings)
    return series


@pytest.mark.parametrize(
    ("gap", "share"), [(300.0, 1.0), (600.0, 1.0), (2.0, 0.367), (1.0, 0.3196)]
)
def test_memorys_cold_start_shrinks_for_readings_closer_than_the_gap_it_is_sized_for(gap, share):
    """10 % of a node of 100 for readings 300 s apart; (gap / 300)^0.2 of it for closer
    ones, fading as ever (at 25 % of the hour here)."""
    m = PredictorSettings().for_memory()
    series = _read_every(gap, [40.0, 41.0, 40.0, 41.0], m)
    assert series.gap == gap
    p = predict(series, 41.0, 900.0, 10.0, m)
    assert p.cold == pytest.approx(10.0 * share * 0.75, rel=1e-3)
    words = p.describe(m, lambda v: f"{v:.2f}")
    if share < 1.0:
        assert f"{share:.0%} of its size for 300s, readings {gap:g}s apart; fading" in words
    else:
        assert words.endswith(f"cold start {p.cold:.2f} (fading to 0 over 1 h)")


def test_a_reading_repeated_unchanged_is_no_new_reading_for_the_gap():
    """A trace read every 300 s, replayed at a 1-s tick, repeats each reading: its gap is
    still 300 s, and memory's cold start all of its share."""
    m = PredictorSettings().for_memory()
    series = Series()
    for i in range(900):
        series = series.observe(float(i), 40.0 + (i // 300), m)
    assert series.changes == 2 and series.gap == 300.0
    assert predict(series, 42.0, 900.0, 10.0, m).cold == pytest.approx(7.5)


def test_cpus_cold_start_does_not_shrink_with_the_readings_gap():
    s = PredictorSettings()
    series = _read_every(1.0, [10.0, 11.0, 10.0, 11.0], s)
    assert predict(series, 11.0, 3.0, 60.0, s).cold == pytest.approx(60.0 * (1 - 3 / 7200))


def test_the_nodes_regime_change_holds_back_a_series_that_showed_none():
    # Memory's own rises are small, but online CPU's regime changed at 150 s: memory is held
    # back all the same, from then on, fading over the cold-start time.
    series, s = _regime_series(1.0)
    assert series.regime_at is None
    p = predict(series, 11.0, 200.0, 0.0, s, capacity=100.0, regime_at=150.0)
    assert p.regime == 50.0 and p.regime_age == 50.0 and "regime change" in p.describe(s, str)
    assert predict(series, 11.0, 200.0, 0.0, s, capacity=100.0).regime == 0.0
