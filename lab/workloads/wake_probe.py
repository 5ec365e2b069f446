"""The online wake-up probe: sleeps `--sleep-us` (1 ms), wakes, records how late it woke.

Closed loop: each sleep starts when the previous wake-up (and its `--work-us` of CPU, none
by default) is done, so a stall never piles up a backlog; what it measures is the time
between the sleep's end and the moment the process runs again: the timer's slack plus the
wait for a CPU (the scheduler's wake-up latency), which is what other work on the node (a
node agent's tick, batch that does not yield) adds to. Thousands of wake-ups a second, so a
10-s window holds enough for a p99.9.

Samples, written at exit (`lab.workloads.protocol`): (intended wake time, lateness µs,
lateness + work µs). Run: `python -m lab.workloads.wake_probe --report R --samples S ...`.
"""

from __future__ import annotations

import argparse
import sys
import time

from lab.workloads._lifecycle import (
    Lifecycle,
    ProbeRecord,
    add_calibration,
    base_parser,
    run_workload,
)
from lab.workloads.protocol import write_samples
from lab.workloads.spin import iterations_per_ms, spin
from lab.workloads.stats import probe_interval

NAME = "wake-probe"


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.workloads.wake_probe", __doc__.split("\n")[0], samples=True)
    parser.add_argument("--sleep-us", type=float, default=1000.0, help="each sleep (1000)")
    parser.add_argument("--work-us", type=float, default=0.0, help="CPU after each wake (0)")
    add_calibration(parser, "when there is work")
    return parser


def probe(args: argparse.Namespace, life: Lifecycle) -> None:
    sleep_s = args.sleep_us / 1e6
    per_ms = args.iterations_per_ms or (iterations_per_ms() if args.work_us > 0 else 0.0)
    work = int(args.work_us / 1000 * per_ms)
    now = life.start()
    record = ProbeRecord(life, probe_interval, now)
    clock = time.perf_counter  # the same CLOCK_MONOTONIC as time.monotonic, finer-grained
    while life.running(now):
        due = clock() + sleep_s
        time.sleep(sleep_s)
        woke = clock()
        if work:
            spin(work)
        now = clock()
        record.add(due, (woke - due) * 1e6, (now - due) * 1e6, now)
    write_samples(args.samples, record.finish(now))


def main() -> int:
    return run_workload(NAME, build_parser(), probe)


if __name__ == "__main__":
    sys.exit(main())
