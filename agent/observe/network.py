"""Traffic per tier class on the uplink (egress) and its ifb (ingress), read from the HTB
class counters each tick, turned into rates: what the batch ceiling is computed from, and
what the metrics export."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from isolation.network import TierTraffic
from qos.tiers import Tier

__all__ = ["NetworkReading", "TrafficMeter"]


class NetworkReading(NamedTuple):
    at: float
    counters: tuple[TierTraffic, ...]  # cumulative, per tier and direction
    # Per direction: bits/s of every tier but batch since the last reading; None when a
    # counter is missing or there is no earlier reading (or a counter went backwards:
    # the class was rebuilt).
    non_batch_bps: dict[str, float | None]


class TrafficMeter:
    def __init__(
        self, read: Callable[[], Iterable[TierTraffic]], clock: Callable[[], float]
    ) -> None:
        self._read = read
        self._clock = clock
        self._last: tuple[float, dict[tuple[Tier, str], int | None]] | None = None

    def sample(self) -> NetworkReading:
        counters = tuple(self._read())
        at = self._clock()
        now = {(c.tier, c.direction): c.sent_bytes for c in counters}
        rates: dict[str, float | None] = {}
        for direction in sorted({c.direction for c in counters}):
            rates[direction] = self._rate(direction, now, at)
        self._last = (at, now)
        return NetworkReading(at, counters, rates)

    def _rate(
        self, direction: str, now: dict[tuple[Tier, str], int | None], at: float
    ) -> float | None:
        if self._last is None or at <= self._last[0]:
            return None
        then, before = self._last
        total = 0
        for (tier, d), value in now.items():
            if d != direction or tier is Tier.BATCH:
                continue
            old = before.get((tier, d))
            if value is None or old is None or value < old:
                return None
            total += value - old
        return total * 8 / (at - then)
