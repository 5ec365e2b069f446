"""The demo's PNG: online latency, batch throughput and colocd's budgets over time.

Three panels sharing the time axis, the phases shaded and named. matplotlib (the `demo`
extra) is imported here only, with the Agg backend, so the demo runs without a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from lab.demo.report import SHORT
from lab.demo.timeline import PhaseResult, Second
from lab.errors import DemoError

__all__ = ["write_plot"]

MIB = 1 << 20
SHADES = {"alone": "#f2f2f2", "kubelet": "#fde0dd", "colocd": "#e0f3db"}


class Series(NamedTuple):
    field: str  # a field of `Second`
    label: str
    color: str
    scale: float = 1.0


LATENCY = Series("online_p99_ms", "online p99 (ms, per second)", "#d62728")
BATCH_CPU_USED = Series("batch_cores", "batch CPU hogs (cores)", "#1f77b4")
MEMORY_HOG = Series("batch_memory_bytes", "memory hog (MiB)", "#9467bd", 1 / MIB)
BATCH_CPU = Series("batch_cpu_milli", "colocd batch-cpu (millicores)", "#2ca02c")
BATCH_MEMORY = Series("batch_memory_budget_bytes", "colocd batch-memory (MiB)", "#8c564b", 1 / MIB)


def _draw(ax: Any, seconds: Sequence[Second], series: Series, *, log: Any = None) -> None:
    """One series (broken where values are missing) with its axis label, from 0 (or log)
    to above its largest value, so a flat line is not hidden on the frame."""
    values = [getattr(s, series.field) for s in seconds]
    ys = [math.nan if v is None else v * series.scale for v in values]
    ax.plot([s.t for s in seconds], ys, color=series.color, label=series.label)
    ax.set_ylabel(series.label, color=series.color)
    top = max((y for y in ys if not math.isnan(y)), default=1.0) or 1.0
    if log is not None:  # a log scale, labelled in plain numbers
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(log)
        ax.yaxis.set_minor_formatter(log)
    else:
        ax.set_ylim(0, top * 1.15)


def _spans(seconds: Sequence[Second]) -> list[tuple[str, float, float]]:
    """(phase, first, last second) of each run of seconds in the same phase."""
    spans: list[tuple[str, float, float]] = []
    for s in seconds:
        if spans and spans[-1][0] == s.phase:
            spans[-1] = (s.phase, spans[-1][1], s.t)
        else:
            spans.append((s.phase, s.t, s.t))
    return spans


def _shade(axes: Sequence[Any], seconds: Sequence[Second]) -> None:
    spans = _spans(seconds)
    for ax in axes:
        for name, a, b in spans:
            ax.axvspan(a - 0.5, b + 0.5, color=SHADES.get(name, "#eeeeee"), zorder=0)
        ax.grid(alpha=0.3)
    for name, a, b in spans:
        axes[0].text(
            (a + b) / 2,
            1.02,
            SHORT.get(name, name),
            transform=axes[0].get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=9,
        )


def write_plot(
    path: Path, seconds: Sequence[Second], phases: Sequence[PhaseResult], t0: float
) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as err:
        raise DemoError(
            "write plot: matplotlib is not installed (pip install 'colocd[demo]')"
        ) from err
    fig, (lat, work, budgets) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    _shade((lat, work, budgets), seconds)
    _draw(lat, seconds, LATENCY, log=FuncFormatter(lambda y, _: f"{y:g}"))
    for p in phases:  # each kind of phase's p99, pooled over its measured windows
        if p.latency_us.p99 is None:
            continue
        for start, end in p.windows:
            lat.hlines(
                p.latency_us.p99 / 1000, start - t0, end - t0, colors="#7f0000", linestyles="dashed"
            )
    _draw(work, seconds, BATCH_CPU_USED)
    _draw(work.twinx(), seconds, MEMORY_HOG)
    _draw(budgets, seconds, BATCH_CPU)
    _draw(budgets.twinx(), seconds, BATCH_MEMORY)
    budgets.set_xlabel("seconds (dashed: the p99 of each kind of phase, its turns pooled)")
    fig.suptitle("colocd demo: online latency, batch throughput and colocd's budgets")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as err:
        raise DemoError(f"write plot {path}: {err.strerror}") from err
    finally:
        plt.close(fig)
    return path
