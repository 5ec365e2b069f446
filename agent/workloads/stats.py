"""Latency percentiles the way load testers report them (nearest rank, no interpolation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (0 < q <= 100) of ascending values; None if empty."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    if not sorted_values:
        return None
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


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
