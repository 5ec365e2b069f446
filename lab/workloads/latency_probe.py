"""The online latency probe: an open-loop request stream with a bursty, calibrated CPU demand.

A request arrives every `--period-ms` (2 ms), on schedule whatever happened before (open
loop, so a stall is charged to every request it delays instead of hiding them). Each needs
a calibrated amount of CPU: on average `--work-us`, modulated by a square wave (busy and
quiet half-periods of `--burst-period-ms`, ±`--burst-depth`) and per-request log-normal
jitter, capped below the period. The sequence is seeded, so every run gets the same one.
With the defaults it needs about half a core, in bursts of up to ~0.9.

Per request it records the wake-up lateness (start minus arrival) and the latency (done
minus arrival), both in µs; they go to `--samples` at exit and as a summary per interval to
the report. Run: `python -m lab.workloads.latency_probe --report R --samples S ...`.
"""

from __future__ import annotations

import argparse
import random
import sys

from lab.workloads._lifecycle import Lifecycle, add_calibration, base_parser, run_workload
from lab.workloads._open_loop import run_open_loop
from lab.workloads.protocol import write_samples
from lab.workloads.spin import iterations_per_ms, spin
from lab.workloads.stats import probe_interval

NAME = "latency-probe"
MAX_WORK_SHARE_OF_PERIOD = 0.9


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(
        "python -m lab.workloads.latency_probe", __doc__.split("\n")[0], samples=True
    )
    parser.add_argument("--period-ms", type=float, default=2.0)
    parser.add_argument("--work-us", type=float, default=1000.0, help="mean CPU per request")
    parser.add_argument("--burst-period-ms", type=float, default=400.0)
    parser.add_argument("--burst-depth", type=float, default=0.4, help="0 = steady demand")
    parser.add_argument("--jitter-sigma", type=float, default=0.3, help="log-normal sigma")
    add_calibration(parser, "at start")
    parser.add_argument("--seed", type=int, default=1)
    return parser


class WorkPlan:
    """The seeded sequence of per-request CPU demands, in spin iterations."""

    def __init__(self, args: argparse.Namespace, iterations_per_us: float) -> None:
        self._rng = random.Random(args.seed)
        self._period_us = args.period_ms * 1000
        self._mean_us = args.work_us
        self._half_burst = max(1, round(args.burst_period_ms / args.period_ms / 2))
        self._depth = args.burst_depth
        self._sigma = args.jitter_sigma
        self._per_us = iterations_per_us
        self._cap_us = MAX_WORK_SHARE_OF_PERIOD * self._period_us

    def iterations(self, index: int) -> int:
        busy = (index // self._half_burst) % 2 == 0
        level = 1 + self._depth if busy else 1 - self._depth
        # mu = -sigma^2/2 keeps the jitter's mean at 1.
        jitter = self._rng.lognormvariate(-(self._sigma**2) / 2, self._sigma)
        work_us = min(self._mean_us * level * jitter, self._cap_us)
        return int(work_us * self._per_us)


def probe(args: argparse.Namespace, life: Lifecycle) -> None:
    plan = WorkPlan(args, (args.iterations_per_ms or iterations_per_ms()) / 1000)
    samples = run_open_loop(
        life, args.period_ms / 1000, lambda index: spin(plan.iterations(index)), probe_interval
    )
    write_samples(args.samples, samples)


def main() -> int:
    return run_workload(NAME, build_parser(), probe)


if __name__ == "__main__":
    sys.exit(main())
