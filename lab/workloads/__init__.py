"""Workloads for `colocd demo` and the benchmarks: each one a subprocess (`python -m ...`).

- `latency_probe`: online, open-loop requests every 2 ms, ~0.5 core in bursts.
- `wake_probe`: online, sleeps 1 ms over and over and records how late each wake-up is.
- `cache_service`: online, serves random reads from a file it keeps in the page cache.
- `cpu_hog`: batch, spins through units of work and reports units done.
- `memory_hog`: batch, grows anonymous memory at a rate up to a target.

`protocol` describes how they report (gate, JSON-lines report, samples file), `launch`
starts and stops them from the harness side, `stats` turns samples into percentiles
and hog reports into rates.
"""

from lab.workloads.launch import WorkloadProcess, stop_all
from lab.workloads.protocol import (
    CacheInterval,
    Ended,
    MemoryGrowth,
    ProbeInterval,
    Report,
    RequestSample,
    Started,
    Throughput,
)
from lab.workloads.stats import LatencySummary, median, percentile, units_per_second

__all__ = [
    "CacheInterval",
    "Ended",
    "LatencySummary",
    "MemoryGrowth",
    "ProbeInterval",
    "Report",
    "RequestSample",
    "Started",
    "Throughput",
    "WorkloadProcess",
    "median",
    "percentile",
    "stop_all",
    "units_per_second",
]
