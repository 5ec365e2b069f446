"""What every workload process does around its real work: flags, gate, signals, reports."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from lab.workloads.protocol import Ended, Report, ReportWriter, Started, wait_for_gate


def base_parser(prog: str, description: str, samples: bool = False) -> argparse.ArgumentParser:
    """The flags launch.py passes every workload; `samples`: also `--samples` (it passes
    that to a workload spawned with samples=True)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--report", type=Path, required=True, help="JSON-lines report file")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: until SIGTERM)"
    )
    parser.add_argument(
        "--gate", action="store_true", help="wait for a line on stdin before starting"
    )
    parser.add_argument(
        "--report-every", type=float, default=1.0, help="seconds between reports (default 1)"
    )
    if samples:
        parser.add_argument("--samples", type=Path, required=True, help="raw samples, at exit")
    return parser


def add_calibration(parser: argparse.ArgumentParser, otherwise: str) -> None:
    """`--iterations-per-ms`: the spin calibration a harness measured once and hands to
    every probe; `otherwise` says when the probe calibrates itself without it."""
    parser.add_argument(
        "--iterations-per-ms",
        type=float,
        default=None,
        help=f"calibration from the harness (default: calibrate here, {otherwise})",
    )


class Lifecycle:
    """Stop flag (SIGTERM/SIGINT or the deadline), plus the report writer."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.reports = ReportWriter.open(args.report)
        self.report_every: float = args.report_every
        self._duration: float | None = args.duration
        self._deadline = float("inf")
        self._signalled = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True

    def start(self) -> float:
        now = time.monotonic()
        if self._duration is not None:
            self._deadline = now + self._duration
        self.reports.write(Started(t=now, pid=os.getpid(), workload=self.name))
        return now

    def running(self, now: float) -> bool:
        return not self._signalled and now < self._deadline

    def write(self, report: Report) -> None:
        self.reports.write(report)

    def end(self) -> None:
        reason = "signal" if self._signalled else "duration"
        self.reports.write(Ended(t=time.monotonic(), reason=reason))
        self.reports.close()


# summarise(now, latencies, latenesses) builds a probe's interval report (it may sort the
# lists in place).
Summarise = Callable[[float, list[float], list[float]], Report]


class ProbeRecord:
    """What a probe keeps of each request: the flat samples (time, lateness µs, latency µs),
    and every `report_every` s an interval report, `summarise` of those since the last."""

    def __init__(self, life: Lifecycle, summarise: Summarise, now: float) -> None:
        self.samples = array("d")
        self._life = life
        self._summarise = summarise
        self._latency: list[float] = []
        self._lateness: list[float] = []
        self._next_report = now + life.report_every

    def add(self, t: float, lateness_us: float, latency_us: float, now: float) -> None:
        self.samples.extend((t, lateness_us, latency_us))
        self._latency.append(latency_us)
        self._lateness.append(lateness_us)
        if now >= self._next_report:
            self._life.write(self._summarise(now, self._latency, self._lateness))
            self._latency, self._lateness = [], []
            self._next_report = now + self._life.report_every

    def finish(self, now: float) -> array:
        """Report the last, partial interval (if it has requests); the samples."""
        if self._latency:
            self._life.write(self._summarise(now, self._latency, self._lateness))
        return self.samples


def run_workload(
    name: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, Lifecycle], None],
) -> int:
    """Parse flags, pass the gate, run `body`, always end the report; the `main` of a workload."""
    args = parser.parse_args()
    try:
        life = Lifecycle(name, args)
    except OSError as err:
        print(f"{name}: open report {args.report}: {err.strerror}", file=sys.stderr)
        return 1
    if args.gate and not wait_for_gate():
        life.reports.close()
        return 0
    try:
        body(args, life)
    except OSError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    finally:
        life.end()
    return 0
