"""Latency percentiles the way load testers report them (nearest rank, no interpolation),
how far a ratio of two of them can be trusted, and a CPU hog's rate of work from its
reports."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import NamedTuple

from lab.workloads.protocol import ProbeInterval, Report, Started, Throughput


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (0 < q <= 100) of ascending values; None if empty."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    if not sorted_values:
        return None
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def ratio_intervals(
    base: Sequence[Sequence[float]],
    other: Sequence[Sequence[float]],
    qs: Sequence[float],
    *,
    level: float = 0.9,
    rounds: int = 500,
    seed: int = 1,
) -> tuple[tuple[float, float] | None, ...]:
    """For each q-th percentile in `qs`, the central `level` interval of other's over base's,
    with each side's blocks (its seconds) drawn again with replacement `rounds` times.
    Latencies within a second move together (a neighbour's burst, a stolen vCPU), so the
    blocks, not the single requests, carry the run's noise. None where a side has no values."""
    if not any(base) or not any(other):
        return tuple(None for _ in qs)
    draw = random.Random(seed)

    def resampled(blocks: Sequence[Sequence[float]]) -> list[float]:
        return sorted(v for _ in blocks for v in draw.choice(blocks))

    ratios: list[list[float]] = [[] for _ in qs]
    for _ in range(rounds):
        below, above = resampled(base), resampled(other)
        for found, q in zip(ratios, qs, strict=True):
            low, high = percentile(below, q), percentile(above, q)
            if low and high is not None:
                found.append(high / low)
    tail = (1 - level) / 2
    return tuple(_central(sorted(found), tail) for found in ratios)


def _central(ordered: Sequence[float], tail: float) -> tuple[float, float] | None:
    """The values `tail` in from each end of ascending values; None if there are none."""
    if not ordered:
        return None
    last = len(ordered) - 1
    return ordered[int(tail * last)], ordered[math.ceil((1 - tail) * last)]


def probe_interval(now: float, latency: list[float], lateness: list[float]) -> ProbeInterval:
    """A probe's report of its last interval (sorts both lists in place)."""
    latency.sort()
    lateness.sort()
    return ProbeInterval(
        t=now,
        requests=len(latency),
        latency_p50_us=percentile(latency, 50),
        latency_p99_us=percentile(latency, 99),
        lateness_p99_us=percentile(lateness, 99),
        cpu_s=time.process_time(),
    )


class LatencySummary(NamedTuple):
    count: int
    p50: float | None
    p99: float | None
    p999: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencySummary:
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p99=percentile(ordered, 99),
            p999=percentile(ordered, 99.9),
            max=ordered[-1] if ordered else None,
        )


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are present (None is a missing reading, not zero)."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    if len(present) % 2:
        return present[mid]
    return (present[mid - 1] + present[mid]) / 2


def units_per_second(
    reports: Sequence[Report], t0: float, t1: float, *, cpu: bool = False
) -> float | None:
    """A hog's rate over the reports that bracket [t0, t1] (its start counts as 0 units);
    with `cpu`, the CPU it got instead (CPU seconds per second: cores).

    With reports every 0.1 s the bracket overshoots the window by at most that at each end;
    a starved hog, which reports late, still gets a rate over a somewhat longer span. One
    that never reported after t1 (killed before its last report) is measured up to its last
    report inside the window; with none there, its rate is unknown (None).
    """
    points = [(r.t, 0) for r in reports if isinstance(r, Started)]
    points += [(r.t, r.cpu_s if cpu else r.units) for r in reports if isinstance(r, Throughput)]
    before = [p for p in points if p[0] <= t0]
    after = [p for p in points if p[0] >= t1] or [p for p in points if p[0] > t0][-1:]
    if not before or not after:
        return None
    (ta, ua), (tb, ub) = max(before), min(after)
    return (ub - ua) / (tb - ta)
