"""The open-loop request stream shared by the online workloads.

A request arrives every `period` seconds whatever happened before, so a stall is charged to
every request it delays (no coordinated omission). After a stall the backlog is served
oldest first. For each request it keeps (arrival, lateness µs, latency µs): lateness is
start minus arrival, latency is done minus arrival.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable

from lab.workloads._lifecycle import Lifecycle
from lab.workloads.protocol import Report

# serve(index) does the request's work; summarise(now, latencies, latenesses) builds the
# interval report (it may sort the lists in place).
Serve = Callable[[int], object]
Summarise = Callable[[float, list[float], list[float]], Report]


def run_open_loop(life: Lifecycle, period: float, serve: Serve, summarise: Summarise) -> array:
    """Serve requests until the lifecycle stops; return the flat samples array."""
    samples = array("d")
    latency: list[float] = []
    lateness: list[float] = []
    index = 0
    now = life.start()
    life.write(summarise(now, [], []))
    next_arrival = now + period
    next_report = now + life.report_every
    while life.running(now):
        if now < next_arrival:
            time.sleep(next_arrival - now)
            now = time.monotonic()
            continue
        arrival = next_arrival
        serve(index)
        done = time.monotonic()
        lateness_us = (now - arrival) * 1e6
        latency_us = (done - arrival) * 1e6
        samples.extend((arrival, lateness_us, latency_us))
        latency.append(latency_us)
        lateness.append(lateness_us)
        index += 1
        next_arrival = arrival + period
        now = done
        if now >= next_report:
            life.write(summarise(now, latency, lateness))
            latency, lateness = [], []
            next_report = now + life.report_every
    if latency:
        life.write(summarise(now, latency, lateness))
    return samples
