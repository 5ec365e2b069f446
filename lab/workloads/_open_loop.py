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

from lab.workloads._lifecycle import Lifecycle, ProbeRecord, Summarise

# serve(index) does the request's work.
Serve = Callable[[int], object]


def run_open_loop(life: Lifecycle, period: float, serve: Serve, summarise: Summarise) -> array:
    """Serve requests until the lifecycle stops; return the flat samples array."""
    index = 0
    now = life.start()
    life.write(summarise(now, [], []))
    record = ProbeRecord(life, summarise, now)
    next_arrival = now + period
    while life.running(now):
        if now < next_arrival:
            time.sleep(next_arrival - now)
            now = time.monotonic()
            continue
        arrival = next_arrival
        serve(index)
        done = time.monotonic()
        record.add(arrival, (now - arrival) * 1e6, (done - arrival) * 1e6, done)
        index += 1
        next_arrival = arrival + period
        now = done
    return record.finish(now)
