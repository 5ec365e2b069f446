"""Online demand = max(current usage, a high percentile of a sliding window of usage).

A `Window` is immutable: `add` returns a new one. It keeps the samples in time order (to
expire the oldest) and in sorted order (to read a percentile by index); both are tuples
updated with `bisect` and slicing, so one tick costs a few C-level copies of at most
`max_samples` floats (300 for the default 5-min window at 1 s) and no sort.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    times: tuple[float, ...] = ()
    values: tuple[float, ...] = ()  # in time order, aligned with `times`
    ordered: tuple[float, ...] = ()  # the same values, sorted

    def add(self, at: float, value: float, window_seconds: float, max_samples: int) -> Window:
        """The window with `value` read at `at` added and samples older than
        `at - window_seconds` (or beyond `max_samples`) dropped. A reading no newer than the
        last one is the same reading seen again and is ignored."""
        if self.times and at <= self.times[-1]:
            return self
        times = (*self.times, at)
        values = (*self.values, value)
        ordered = list(self.ordered)
        insort(ordered, value)
        cut = max(bisect_right(times, at - window_seconds), len(times) - max_samples)
        for old in values[:cut]:
            del ordered[bisect_left(ordered, old)]
        return Window(times[cut:], values[cut:], tuple(ordered))

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (`q` in (0, 1]); None for an empty window."""
        if not self.ordered:
            return None
        rank = min(len(self.ordered), max(1, math.ceil(q * len(self.ordered))))
        return self.ordered[rank - 1]

    @property
    def peak(self) -> float | None:
        return self.ordered[-1] if self.ordered else None

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The predicted demand and how it was reached (for the budget's reason)."""

    value: float | None
    current: float | None
    percentile: float | None
    samples: int

    def describe(self, q: float) -> str:
        """Where the value came from, e.g. 'p95 of 300 samples' or 'current'."""
        if self.value is None:
            return "never read"
        if self.current is None:
            return "window peak, current reading missing"
        if self.percentile is not None and self.percentile > self.current:
            return f"p{q * 100:g} of {self.samples} samples"
        return "current"


def predict(window: Window, current: float | None, q: float) -> Prediction:
    """max(current, percentile). With the current reading missing the window's peak stands
    in for it (conservative); with no data at all the demand is unknown (None)."""
    pct = window.percentile(q)
    if current is None:
        return Prediction(window.peak, None, pct, len(window))
    value = current if pct is None else max(current, pct)
    return Prediction(value, current, pct, len(window))
