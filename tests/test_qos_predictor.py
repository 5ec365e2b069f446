"""The sliding-window predictor: percentiles, expiry, and max(current, percentile)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from qos.predictor import Window, predict


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


def test_prediction_is_max_of_current_and_percentile():
    w = _fill([10.0] * 19 + [100.0])
    assert predict(w, 50.0, 0.95).value == 50.0
    assert predict(w, 50.0, 1.0).value == 100.0
    assert predict(w, 500.0, 0.95).value == 500.0


def test_missing_current_falls_back_to_the_window_peak_and_nothing_is_unknown():
    w = _fill([1.0, 7.0, 3.0])
    assert predict(w, None, 0.5).value == 7.0
    assert predict(Window(), None, 0.95).value is None
    assert predict(Window(), 3.0, 0.95).value == 3.0
