"""The demo's verdict in words (pure): a difference is called only when the run's own noise,
seen over its seconds, cannot explain it."""

from __future__ import annotations

import random

from lab.demo.report import verdict
from lab.demo.timeline import PhaseResult
from lab.workloads.stats import LatencySummary


def _phase(name: str, seconds: list[list[float]], idle: float | None = None) -> PhaseResult:
    return PhaseResult(
        name=name,
        windows=((0.0, float(len(seconds))),),
        latency_us=LatencySummary.of([v for s in seconds for v in s]),
        batch_cores=1.0,
        batch_units_per_s=100.0,
        batch_cpu_milli=None,
        batch_memory_budget_bytes=None,
        other_cores=0.0,
        idle_cores=idle,
        latency_by_second_us=tuple(tuple(s) for s in seconds),
    )


def _seconds(draw: random.Random, scale: float, slow: float) -> list[list[float]]:
    """13 seconds of 300 requests (us); a fifth of the seconds `slow` times slower."""
    out = []
    for _ in range(13):
        factor = scale * (slow if draw.random() < 0.2 else 1.0)
        out.append([factor * draw.expovariate(1 / 900) for _ in range(300)])
    return out


def test_a_p99_that_differs_by_chance_is_called_noise() -> None:
    draw = random.Random(7)
    kubelet, colocd = _seconds(draw, 1.0, 8.0), _seconds(draw, 1.0, 8.0)
    ratio = _phase("c", colocd).latency_us.p99 / _phase("k", kubelet).latency_us.p99
    assert ratio > 1.4  # alike, yet colocd's p99 is 1.5x kubelet's, as in a run seen here
    p99 = verdict([_phase("kubelet", kubelet), _phase("colocd", colocd)]).split(" and p99.9")[0]
    assert "(1.51x, within this run's noise: over its seconds resampled the ratio" in p99
    assert "HIGHER" not in p99 and "lower" not in p99


def test_a_clear_gain_is_called_with_its_interval() -> None:
    draw = random.Random(3)
    kubelet, colocd = _seconds(draw, 3.0, 1.2), _seconds(draw, 1.0, 1.2)
    text = verdict([_phase("kubelet", kubelet), _phase("colocd", colocd)])
    assert "x lower; " in text and " over its seconds resampled" in text
    assert "noise" not in text and "HIGHER" not in text


def test_a_clear_loss_is_called_higher() -> None:
    draw = random.Random(3)
    kubelet, colocd = _seconds(draw, 1.0, 1.2), _seconds(draw, 3.0, 1.2)
    text = verdict([_phase("kubelet", kubelet), _phase("colocd", colocd)])
    assert "x HIGHER; " in text and "noise" not in text


def test_colocd_is_also_set_against_online_alone() -> None:
    draw = random.Random(3)
    alone, kubelet = _seconds(draw, 1.0, 1.2), _seconds(draw, 0.5, 1.2)
    colocd = [list(s) for s in alone]  # online under colocd as it was alone
    text = verdict([_phase("alone", alone), _phase("kubelet", kubelet), _phase("colocd", colocd)])
    assert "x HIGHER; " in text.split(" and p99.9")[0]  # kubelet's busy node answered faster
    assert " Against online alone, its p99 " in text and "(about the same). " in text
    assert "'Online alone' is not the floor" in text


def test_the_cpu_each_phase_left_idle_is_told() -> None:
    draw = random.Random(5)
    kubelet, colocd = _seconds(draw, 1.0, 1.2), _seconds(draw, 1.0, 1.2)
    text = verdict([_phase("kubelet", kubelet, 0.02), _phase("colocd", colocd, 0.47)])
    assert "CPU left idle (cores): kubelet's defaults 0.02, colocd 0.47;" in text
    assert "CPU left idle" not in verdict([_phase("kubelet", kubelet), _phase("colocd", colocd)])
