"""The demo's PNG: online latency, batch throughput and colocd's budgets over time.

Three panels sharing the time axis, the phases shaded and named. matplotlib (the `demo`
extra) is imported here only, with the Agg backend, so the demo runs without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.demo.report import TITLES
from agent.demo.timeline import PhaseResult, Second
from agent.errors import DemoError

__all__ = ["write_plot"]

MIB = 1 << 20
SHADES = {"alone": "#f2f2f2", "kubelet": "#fde0dd", "colocd": "#e0f3db"}


def _series(seconds: Sequence[Second], field: str, scale: float = 1.0):
    xs = [s.t for s in seconds if getattr(s, field) is not None]
    ys = [getattr(s, field) * scale for s in seconds if getattr(s, field) is not None]
    return xs, ys


def write_plot(
    path: Path, seconds: Sequence[Second], phases: Sequence[PhaseResult], t0: float
) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise DemoError(
            "write plot: matplotlib is not installed (pip install 'colocd[demo]')"
        ) from err
    fig, (lat, work, bud) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    spans: dict[str, tuple[float, float]] = {}
    for s in seconds:
        first, last = spans.get(s.phase, (s.t, s.t))
        spans[s.phase] = (min(first, s.t), max(last, s.t))
    for ax in (lat, work, bud):
        for name, (a, b) in spans.items():
            ax.axvspan(a - 0.5, b + 0.5, color=SHADES.get(name, "#eeeeee"), zorder=0)
        ax.grid(alpha=0.3)
    for name, (a, b) in spans.items():
        lat.text(
            (a + b) / 2,
            1.02,
            TITLES.get(name, name),
            transform=lat.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    lat.plot(*_series(seconds, "online_p99_ms"), color="#d62728", label="online p99 (per second)")
    for p in phases:
        if p.latency_us.p99 is not None:
            lat.hlines(
                p.latency_us.p99 / 1000,
                p.start - t0,
                p.end - t0,
                colors="#7f0000",
                linestyles="dashed",
                label=None,
            )
    lat.set_yscale("log")
    lat.set_ylabel("online latency (ms)")
    lat.legend(loc="upper left", fontsize=8)
    work.plot(*_series(seconds, "batch_cores"), color="#1f77b4", label="batch work (CPU hogs)")
    work.set_ylabel("batch (cores of work)")
    work.set_ylim(bottom=0)
    mem = work.twinx()
    mem.plot(
        *_series(seconds, "batch_memory_bytes", 1 / MIB), color="#9467bd", label="memory hog (MiB)"
    )
    mem.set_ylabel("memory hog (MiB)")
    mem.set_ylim(bottom=0)
    work.legend(loc="upper left", fontsize=8)
    mem.legend(loc="upper right", fontsize=8)
    bud.plot(*_series(seconds, "batch_cpu_milli"), color="#2ca02c", label="batch-cpu (m)")
    bud.set_ylabel("batch-cpu (millicores)")
    bud.set_ylim(bottom=0)
    bmem = bud.twinx()
    bmem.plot(
        *_series(seconds, "batch_memory_budget_bytes", 1 / MIB),
        color="#8c564b",
        label="batch-memory (MiB)",
    )
    bmem.set_ylabel("batch-memory (MiB)")
    bmem.set_ylim(bottom=0)
    bud.legend(loc="upper left", fontsize=8)
    bmem.legend(loc="upper right", fontsize=8)
    bud.set_xlabel("seconds")
    fig.suptitle("colocd demo: online latency, batch throughput and colocd's budgets")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as err:
        raise DemoError(f"write plot {path}: {err.strerror}") from err
    finally:
        plt.close(fig)
    return path
