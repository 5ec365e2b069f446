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


def test_old_samples_leave_the_window_by_time_and_by_count():
    w = _fill([5.0, 1.0, 1.0, 1.0], window_seconds=2.5)
    assert w.values == (1.0, 1.0, 1.0)
    assert w.peak == 1.0
    w = _fill([9.0, 1.0, 2.0], max_samples=2)
    assert w.values == (1.0, 2.0)


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


def test_memory_has_its_own_burst_factor_and_cold_start():
    s = PredictorSettings()
    m = s.for_memory()
    assert (m.burst_factor, m.cold_start_seconds) == (2.5, 3600.0)
    assert (s.burst_factor, s.cold_start_seconds) == (1.5, 7200.0)
    assert m.window_seconds == s.window_seconds and m.regime_ratio == s.regime_ratio


def test_the_nodes_regime_change_holds_back_a_series_that_showed_none():
    # Memory's own rises are small, but online CPU's regime changed at 150 s: memory is held
    # back all the same, from then on, fading over the cold-start time.
    series, s = _regime_series(1.0)
    assert series.regime_at is None
    p = predict(series, 11.0, 200.0, 0.0, s, capacity=100.0, regime_at=150.0)
    assert p.regime == 50.0 and p.regime_age == 50.0 and "regime change" in p.describe(s, str)
    assert predict(series, 11.0, 200.0, 0.0, s, capacity=100.0).regime == 0.0
