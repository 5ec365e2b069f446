"""Calibrated CPU work: a loop whose iteration count stands for a known amount of CPU time."""

from __future__ import annotations

import time


def spin(iterations: int) -> int:
    """Burn CPU for `iterations` loop turns; returns a value so the loop cannot be elided."""
    x = 0
    for i in range(iterations):
        x ^= i
    return x


def iterations_per_ms(sample_iterations: int = 50_000, rounds: int = 7) -> float:
    """How many `spin` iterations one CPU does in a millisecond.

    The fastest of several rounds is taken: interference from other processes only ever
    makes a round slower, so the minimum is the closest to an uncontended CPU.
    """
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        spin(sample_iterations)
        best = min(best, time.perf_counter() - start)
    return sample_iterations / (best * 1000)
