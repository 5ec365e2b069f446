"""What the demo prints: one live line per second, the summary table, and the verdict."""

from __future__ import annotations

from collections.abc import Sequence

from agent.report.output import render_table
from lab.demo.timeline import PhaseResult, Second
from lab.workloads.stats import ratio_intervals
from qos.units import Unit, format_amount

__all__ = ["SHORT", "TITLES", "live_line", "summary_table", "verdict"]

TITLES = {
    "alone": "online alone",
    "kubelet": "online + batch, kubelet defaults",
    "colocd": "online + batch, colocd",
}
SHORT = {"alone": "online alone", "kubelet": "kubelet's defaults", "colocd": "colocd"}
COLUMNS = (
    ("PHASE", "phase"),
    ("ONLINE P50", "p50"),
    ("P99", "p99"),
    ("P99.9 (ms)", "p999"),
    ("BATCH CPU (cores)", "batch"),
    ("BATCH WORK", "work"),
    ("BATCH-CPU", "batch_cpu"),
    ("BATCH-MEMORY", "batch_memory"),
    ("IDLE", "idle"),
    ("OTHER LOAD (cores)", "other"),
)


def _ms(value: float | None, width: int = 6) -> str:
    return "-".rjust(width) if value is None else f"{value:{width}.2f}"


def _milli(value: int | None) -> str:
    return "-" if value is None else format_amount(value, Unit.MILLICORES)


def _bytes(value: int | None) -> str:
    return "-" if value is None else format_amount(value, Unit.BYTES)


def live_line(s: Second) -> str:
    batch = "   -" if s.batch_cores is None else f"{s.batch_cores:4.2f}"
    memory = "" if s.batch_memory_bytes is None else f" +{_bytes(s.batch_memory_bytes)}"
    budgets = (
        f"batch-cpu {_milli(s.batch_cpu_milli)} batch-memory {_bytes(s.batch_memory_budget_bytes)}"
        if s.batch_cpu_milli is not None
        else "budgets -"
    )
    return (
        f"{s.t:5.0f}s {s.phase:8} online p99 {_ms(s.online_p99_ms)} ms | batch {batch} cores"
        f"{memory} | {budgets} ({s.why})"
    )


def _us_to_ms(value: float | None) -> float | None:
    return None if value is None else value / 1000


def _work(r: PhaseResult, base: PhaseResult | None) -> str:
    """Units of work per second, relative to the kubelet phase's."""
    if r.batch_units_per_s is None:
        return "-"
    if base is None or not base.batch_units_per_s:
        return f"{r.batch_units_per_s:.0f}/s"
    return f"{r.batch_units_per_s / base.batch_units_per_s:.2f}x"


def summary_table(results: Sequence[PhaseResult]) -> str:
    kubelet = next((r for r in results if r.name == "kubelet"), None)
    rows = [
        {
            "phase": TITLES.get(r.name, r.name),
            "p50": _ms(_us_to_ms(r.latency_us.p50), 0),
            "p99": _ms(_us_to_ms(r.latency_us.p99), 0),
            "p999": _ms(_us_to_ms(r.latency_us.p999), 0),
            "batch": "-" if r.batch_cores is None else f"{r.batch_cores:.2f}",
            "work": _work(r, kubelet),
            "batch_cpu": _milli(r.batch_cpu_milli),
            "batch_memory": _bytes(r.batch_memory_budget_bytes),
            "idle": "-" if r.idle_cores is None else f"{r.idle_cores:.2f}",
            "other": "-" if r.other_cores is None else f"{r.other_cores:.2f}",
        }
        for r in results
    ]
    return render_table(rows, COLUMNS)


def _compare(
    name: str, ours: float | None, theirs: float | None, spread: tuple[float, float] | None
) -> str:
    """'p99 0.61 ms against 2.30 ms (3.8x lower)', the worse or equal reading, or a ratio
    this run cannot tell from noise: `spread` is ours/theirs' 90 % interval over the two
    phases' seconds resampled (None: not worked out). Latencies in us."""
    if ours is None or theirs is None:
        return f"{name} not measured"
    text = f"{name} {ours / 1000:.2f} ms against {theirs / 1000:.2f} ms"
    if theirs <= 0 or ours <= 0:
        return text
    ratio = ours / theirs
    if 0.95 <= ratio <= 1.05:
        return f"{text} (about the same)"
    if spread is None:
        noise = ""
    else:
        low, high = spread
        if low <= 1 <= high:
            return (
                f"{text} ({ratio:.2f}x, within this run's noise: over its seconds resampled "
                f"the ratio lies between {low:.2f}x and {high:.2f}x)"
            )
        noise = (
            f"; {1 / high:.1f}x to {1 / low:.1f}x" if ratio < 1 else f"; {low:.1f}x to {high:.1f}x"
        )
        noise += " over its seconds resampled"
    if ratio < 1:
        return f"{text} ({1 / ratio:.1f}x lower{noise})"
    return f"{text} ({ratio:.1f}x HIGHER{noise})"


def _idle_sentence(results: Sequence[PhaseResult]) -> str:
    """How much CPU each phase left idle (an idle vCPU wakes late: see the verdict)."""
    idle = [(SHORT.get(r.name, r.name), r.idle_cores) for r in results]
    if any(cores is None for _, cores in idle):
        return ""
    each = ", ".join(f"{title} {cores:.2f}" for title, cores in idle)
    return f" CPU left idle (cores): {each}; colocd keeps that room free for online's bursts."


def verdict(results: Sequence[PhaseResult]) -> str:
    """The result in plain words: colocd against kubelet's defaults and against online
    alone, and what 'alone' means."""
    by = {r.name: r for r in results}
    alone, kubelet, colocd = by.get("alone"), by.get("kubelet"), by.get("colocd")
    if kubelet is None or colocd is None:
        return "The demo did not get to run every phase, so there is nothing to compare."
    lat_c, lat_k = colocd.latency_us, kubelet.latency_us
    p99, p999 = ratio_intervals(
        kubelet.latency_by_second_us, colocd.latency_by_second_us, (99, 99.9)
    )
    words = [
        "Under colocd, online's "
        + _compare("p99", lat_c.p99, lat_k.p99, p99)
        + " and "
        + _compare("p99.9", lat_c.p999, lat_k.p999, p999)
        + " under kubelet's defaults"
    ]
    if colocd.batch_units_per_s is not None and kubelet.batch_units_per_s:
        share = colocd.batch_units_per_s / kubelet.batch_units_per_s
        cores = "" if colocd.batch_cores is None else f" on {colocd.batch_cores:.2f} cores"
        words.append(f"; batch did {share:.0%} of the work it did under kubelet's defaults{cores}.")
    else:
        words.append("; batch throughput was not measured.")
    if alone is not None and alone.latency_us.p99 is not None:
        (spread,) = ratio_intervals(alone.latency_by_second_us, colocd.latency_by_second_us, (99,))
        words.append(
            " Against online alone, its "
            + _compare("p99", lat_c.p99, alone.latency_us.p99, spread)
            + ". 'Online alone' is not the floor: on this machine idle vCPUs halt and take"
            " longer to wake, so a busy node can answer faster than one with CPUs idle."
        )
    words.append(_idle_sentence(results))
    other = [r.other_cores for r in results if r.other_cores is not None]
    if other and max(other) > 0.25:
        words.append(
            f" Other work on this machine used up to {max(other):.2f} cores during the run"
            " (OTHER LOAD), which makes the figures noisy."
        )
    return "".join(words)
