"""A batch CPU hog: spins through fixed units of work as fast as it is allowed to.

Throughput is units per second: the report carries the cumulative unit count and the
process's CPU time every `--report-every` seconds (default 0.25). One process is one
thread, so it can use at most one core; start N of them for N cores of demand.
Run: `python -m lab.workloads.cpu_hog --report R [--unit-iterations N]`.
"""

from __future__ import annotations

import argparse
import sys
import time

from lab.workloads._lifecycle import Lifecycle, base_parser, run_workload
from lab.workloads.protocol import Throughput
from lab.workloads.spin import spin

NAME = "cpu-hog"
DEFAULT_UNIT_ITERATIONS = 20_000


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.workloads.cpu_hog", __doc__.split("\n")[0])
    parser.set_defaults(report_every=0.25)
    parser.add_argument(
        "--unit-iterations",
        type=int,
        default=DEFAULT_UNIT_ITERATIONS,
        help=f"spin iterations in one unit of work (default {DEFAULT_UNIT_ITERATIONS})",
    )
    return parser


def hog(args: argparse.Namespace, life: Lifecycle) -> None:
    units = 0
    now = life.start()
    next_report = now + life.report_every
    while life.running(now):
        spin(args.unit_iterations)
        units += 1
        now = time.monotonic()
        if now >= next_report:
            life.write(Throughput(t=now, units=units, cpu_s=time.process_time()))
            next_report = now + life.report_every
    life.write(Throughput(t=now, units=units, cpu_s=time.process_time()))


def main() -> int:
    return run_workload(NAME, build_parser(), hog)


if __name__ == "__main__":
    sys.exit(main())
