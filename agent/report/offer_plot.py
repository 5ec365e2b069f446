"""A PNG of one trace: the idle capacity and each policy's offer to batch over time, CPU on
top and memory below. matplotlib comes with the `demo` extra and is imported only here,
only when a plot is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.errors import PlotError
from qos.replay import GIB, ReplayResult


def write_offer_plot(path: Path, title: str, results: Sequence[ReplayResult]) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotError(
            "write plot: matplotlib is not installed (pip install 'colocd[demo]')"
        ) from err
    with_series = [r for r in results if r.series]
    if not with_series:
        raise PlotError(f"write plot {path}: no offers recorded")
    fig, (cpu, mem) = plt.subplots(2, 1, sharex=True, figsize=(11, 7))
    first = with_series[0].series
    t0 = first[0].t
    hours = [(p.t - t0) / 3600 for p in first]
    cpu.fill_between(hours, [p.cpu_idle_milli / 1000 for p in first], color="#dddddd", label="idle")
    mem.fill_between(
        hours, [p.memory_idle_bytes / GIB for p in first], color="#dddddd", label="idle"
    )
    for r in with_series:
        xs = [(p.t - t0) / 3600 for p in r.series]
        style = {"linewidth": 1.6 if r.name == "colocd" else 0.9}
        cpu.step(
            xs, [p.cpu_offer_milli / 1000 for p in r.series], where="post", label=r.name, **style
        )
        mem.step(
            xs, [p.memory_offer_bytes / GIB for p in r.series], where="post", label=r.name, **style
        )
    cpu.set_ylabel("CPU offered to batch (cores)")
    mem.set_ylabel("memory offered to batch (GiB)")
    mem.set_xlabel("hours")
    cpu.legend(loc="upper right", fontsize=8, ncol=3)
    for ax in (cpu, mem):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: what each policy offered batch, against the idle capacity")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as err:
        raise PlotError(f"write plot {path}: {err.strerror}") from err
    finally:
        plt.close(fig)
    return path
