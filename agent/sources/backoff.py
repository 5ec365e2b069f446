"""Exponential back-off with jitter, for retrying the API server without stampeding it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """`next_delay()` grows `initial_s * factor**n` up to `max_s`, each spread by ±`jitter`
    so that thousands of agents do not retry in step; `reset()` after a success."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(
                f"back-off needs 0 < initial ({self.initial_s}) <= max ({self.max_s}), "
                f"factor >= 1 ({self.factor}) and 0 <= jitter < 1 ({self.jitter})"
            )

    def next_delay(self, at_least_s: float = 0.0) -> float:
        """The delay before the next try; `at_least_s` honours a server's Retry-After."""
        base = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        spread = base * self.jitter
        return max(at_least_s, base + self.rng.uniform(-spread, spread))

    def reset(self) -> None:
        self.failures = 0
