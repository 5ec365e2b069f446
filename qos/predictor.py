"""Demand = the window's level or the current reading, each with its allowance.

The level is a high percentile (default: the peak) of a sliding window of use. An
allowance covers what the next reading may add before the next decision, learned from the
node's own readings (fading with a half-life) times a safety factor:
- on the level (CPU, GPU): the largest rise of a reading above the level just before it;
- on the current reading (memory): the largest step from one reading to the next that took
  use above the level. Use that stays under its level cannot hurt, and a new level that
  is reached in small steps is seen in time; only a large step to a new level can.
Demand is the higher of the two. Until the node has been watched for a while that is not
evidence enough, so a cold-start allowance (a share of capacity, fading linearly to 0 over
`cold_start_seconds`) stands in on both whenever it is larger. All of it is in time, not
samples, so it holds at a 1-s tick and at the 60-300-s rates of production traces. For
memory the share is sized for readings `cold_start_gap_seconds` apart and shrinks as
(gap / that)^0.2 for closer ones: the less time between two readings, the less memory can
step unseen (a reading repeated unchanged, as a coarse trace replayed at a finer tick
repeats it, is no new reading).

A `Window` is immutable: `add` returns a new one. It keeps the samples in time order (to
expire the oldest) and in sorted order (to read a percentile by index); both are tuples
updated with `bisect` and slicing, so one tick costs a few C-level copies of at most
`max_samples` floats and no sort. A window longer than `max_samples` ticks keeps the
highest reading of each `window / max_samples` seconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass

from qos.settings import PredictorSettings


@dataclass(frozen=True, slots=True)
class Window:
    times: tuple[float, ...] = ()
    values: tuple[float, ...] = ()  # in time order, aligned with `times`
    ordered: tuple[float, ...] = ()  # the same values, sorted

    def add(self, at: float, value: float, window_seconds: float, max_samples: int) -> Window:
        """The window with `value` read at `at` added and samples older than
        `at - window_seconds` (or beyond `max_samples`) dropped. A reading less than
        `window_seconds / max_samples` after the last sample joins it, the higher kept (a
        percentile of such samples errs high). A reading no newer than the last one is the
        same reading seen again and is ignored."""
        if self.times and at <= self.times[-1]:
            return self
        ordered = list(self.ordered)
        if self.times and at - self.times[-1] < window_seconds / max_samples:
            if value <= self.values[-1]:
                return self
            times = self.times
            values = (*self.values[:-1], value)
            del ordered[bisect_left(ordered, self.values[-1])]
        else:
            times = (*self.times, at)
            values = (*self.values, value)
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
class Series:
    """One tier's use of one resource: the window, what was learned from its readings (as
    of `learned_at`, the last reading's time), when it was first read (for the cold start)
    and when its last regime change was seen."""

    window: Window = Window()
    burst: float = 0.0  # the largest rise of a reading above the level before it
    step: float = 0.0  # the largest step from one reading to the next above the level
    learned_at: float | None = None
    last: float | None = None  # the last reading
    first_at: float | None = None
    regime_at: float | None = None
    changes: int = 0  # readings that differed from the one before
    changed_at: float | None = None  # the last of them

    @property
    def gap(self) -> float | None:
        """The mean time between readings that changed, None before the first change."""
        if not self.changes or self.first_at is None or self.changed_at is None:
            return None
        return (self.changed_at - self.first_at) / self.changes

    def _faded(self, learned: float, at: float, half_life: float) -> float:
        if self.learned_at is None:
            return 0.0
        return learned * 0.5 ** (max(0.0, at - self.learned_at) / half_life)

    def burst_now(self, at: float, half_life: float) -> float:
        return self._faded(self.burst, at, half_life)

    def step_now(self, at: float, half_life: float) -> float:
        return self._faded(self.step, at, half_life)

    def observe(
        self, at: float, value: float, settings: PredictorSettings, capacity: float = 0.0
    ) -> Series:
        """The series with `value` read at `at` added; a reading seen again is ignored. Past
        the cold start, a rise above the level of more than `regime_ratio` x the largest
        seen and more than `regime_min_fraction` of `capacity` is a regime change."""
        if self.learned_at is not None and at <= self.learned_at:
            return self
        level = self.window.percentile(settings.percentile)
        half_life = settings.burst_half_life_seconds
        burst = self.burst_now(at, half_life)
        step = self.step_now(at, half_life)
        first = at if self.first_at is None else self.first_at
        regime_at = self.regime_at
        if level is not None:
            rise = value - level
            if (
                settings.regime_ratio > 0
                and capacity > 0
                and at - first >= settings.cold_start_seconds
                and rise > settings.regime_ratio * burst
                and rise > settings.regime_min_fraction * capacity
            ):
                regime_at = at
            burst = max(burst, rise)
            if rise > 0 and self.last is not None:
                step = max(step, value - self.last)
        window = self.window.add(at, value, settings.window_seconds, settings.max_samples)
        changes, changed_at = self.changes, self.changed_at
        if self.last is not None and value != self.last:
            changes, changed_at = changes + 1, at
        return Series(window, burst, step, at, value, first, regime_at, changes, changed_at)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The predicted demand and each term of it (for the budget's reason)."""

    value: float | None
    current: float | None
    level: float | None
    samples: int
    burst: float = 0.0  # the allowance on the level: max(learned x factor, cold start, regime)
    learned: float = 0.0  # the largest rise seen, faded
    cold: float = 0.0  # the cold-start allowance now
    gap: float | None = None  # the readings' gap the cold start was scaled for (if it was)
    regime: float = 0.0  # the allowance after a regime change, now
    regime_age: float = 0.0  # seconds since that regime change
    step: float = 0.0  # the largest step to a new level seen, faded
    on_current: float = 0.0  # the allowance on the current reading (with a step factor)
    from_current: bool = False  # the current reading + on_current is the higher

    def describe(self, settings: PredictorSettings, fmt: Callable[[float], str]) -> str:
        """Where the value came from, every term named."""
        if self.value is None:
            return "never read"
        q = settings.percentile
        name = "peak" if q >= 1.0 else f"p{q * 100:g}"
        window = _duration(settings.window_seconds)
        if self.current is None:
            base = f"{name} of {window} ({self.samples} samples), current reading missing"
        elif self.level is not None and self.level > self.current:
            base = f"{name} {fmt(self.level)} of {window} ({self.samples} samples)"
        else:
            base = f"current {fmt(self.current)}"
        on_level = base + self._why(
            self.burst,
            self.learned,
            settings.burst_factor,
            "rise above the level",
            settings=settings,
            fmt=fmt,
        )
        if settings.step_factor <= 0 or self.on_current <= 0:
            return on_level
        now = base if self.current is None else f"current {fmt(self.current)}"
        on_current = now + self._why(
            self.on_current,
            self.step,
            settings.step_factor,
            f"step to a new {name}",
            settings=settings,
            fmt=fmt,
        )
        winner, other = (on_current, on_level) if self.from_current else (on_level, on_current)
        if self.current is None or (self.from_current and base == now):
            return winner  # the same reading under both: the larger allowance says it all
        return f"{winner}, above {other}"

    def _why(
        self,
        allowance: float,
        learned: float,
        factor: float,
        what: str,
        *,
        settings: PredictorSettings,
        fmt: Callable[[float], str],
    ) -> str:
        if allowance <= 0:
            return ""
        hours = settings.cold_start_seconds / 3600
        if self.regime >= allowance:
            return (
                f" + regime change {fmt(self.regime)} (online CPU or memory rose over "
                f"{settings.regime_ratio:g} x its largest rise {self.regime_age:.0f}s ago: "
                f"all of capacity held back, fading to 0 over {hours:g} h)"
            )
        if self.cold >= allowance:
            scaled = ""
            if self.gap is not None:
                ref = settings.cold_start_gap_seconds
                share = _gap_scale(self.gap, ref)
                scaled = f"{share:.0%} of its size for {ref:g}s, readings {self.gap:.3g}s apart; "
            return f" + cold start {fmt(self.cold)} ({scaled}fading to 0 over {hours:g} h)"
        return (
            f" + burst {fmt(allowance)} ({factor:g} x {fmt(learned)}, the largest {what} "
            f"seen, half-life {settings.burst_half_life_seconds / 3600:g} h)"
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def latest(*times: float | None) -> float | None:
    """The latest of the times given, None when none is."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


# On examples/traces 0.12-0.24 won the 2-s traces' memory bars and let no step through.
GAP_EXPONENT = 0.2


def _gap_scale(gap: float, reference: float) -> float:
    """The share of the cold-start allowance for readings `gap` (< `reference`) seconds apart."""
    return (gap / reference) ** GAP_EXPONENT


def _fade(age: float, seconds: float) -> float:
    """1 at age 0, falling linearly to 0 at `seconds` (0 throughout when `seconds` is 0)."""
    return max(0.0, 1.0 - age / seconds) if seconds > 0 else 0.0


def predict(
    series: Series,
    current: float | None,
    at: float,
    cold_start: float,
    settings: PredictorSettings,
    *,
    capacity: float = 0.0,
    regime_at: float | None = None,
) -> Prediction:
    """The higher of max(current, level) + max(learned rise x `burst_factor`, cold start,
    regime) and, with a `step_factor`, current + max(learned step x `step_factor`, cold
    start, regime). With the current reading missing the window's peak stands in for it
    (conservative); with no data at all the demand is unknown (None). `cold_start` is the
    allowance (in the series' unit) of a new node, fading to 0 over `cold_start_seconds`;
    after a regime change (the series' own or `regime_at`, the node's last one, whichever is
    later) the allowance is all of `capacity`, fading to 0 over the same time."""
    window = series.window
    level = window.percentile(settings.percentile)
    base = window.peak if current is None else (current if level is None else max(current, level))
    if base is None:
        return Prediction(None, current, level, len(window))
    half_life = settings.burst_half_life_seconds
    learned = series.burst_now(at, half_life)
    step = series.step_now(at, half_life)
    age = 0.0 if series.first_at is None else max(0.0, at - series.first_at)
    ref = settings.cold_start_gap_seconds
    gap = series.gap
    if gap is not None and gap >= ref:
        gap = None  # readings as far apart as the share is sized for, or no scaling (ref 0)
    scale = 1.0 if gap is None else _gap_scale(gap, ref)
    cold = cold_start * scale * _fade(age, settings.cold_start_seconds)
    last = latest(series.regime_at, regime_at)
    regime_age = 0.0 if last is None else max(0.0, at - last)
    regime = 0.0 if last is None else capacity * _fade(regime_age, settings.cold_start_seconds)
    burst = max(learned * settings.burst_factor, cold, regime)
    on_current = max(step * settings.step_factor, cold, regime) if settings.step_factor else 0.0
    now = base if current is None else current
    from_current = now + on_current > base + burst
    value = now + on_current if from_current else base + burst
    return Prediction(
        value,
        current,
        level,
        len(window),
        burst=burst,
        learned=learned,
        cold=cold,
        gap=gap,
        regime=regime,
        regime_age=regime_age,
        step=step,
        on_current=on_current,
        from_current=from_current,
    )
