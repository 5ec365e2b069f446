"""`colocd demo`: colocation shown on this very machine, with the real agent (no Kubernetes).

The demo itself lives in the lab (`lab.demo`), which the running agent never imports: it is
imported here only when `colocd demo` runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli_support import Reporter, seconds_between

if TYPE_CHECKING:
    from lab.demo.timeline import Second

HELP = "show colocation on this machine: online vs batch, kubelet's defaults vs colocd"
DEFAULT_DURATION_S = 60.0
MIN_PHASE_S = 3.0
PHASE_COUNT = 5  # lab.demo.run.PHASES; a test checks they agree
DEFAULT_PLOT = Path("colocd-demo.png")
DESCRIPTION = """\
Show what colocd does, on this very machine, with no Kubernetes. The demo builds a
kubelet-like cgroup tree beneath its own cgroups (kubepods with a 2 GiB memory limit, the
burstable and besteffort levels, one cgroup per pod and container), starts an online
service and batch jobs in it as "pods", and runs the real agent (`colocd run`) on them:

  online   shop/web: a latency probe, a request every 2 ms needing ~half a core in
           bursts (Burstable, asks for 500m)
  batch    jobs/crunch-N: one CPU hog per CPU; jobs/fill: a memory hog growing to 384 MiB
           (BestEffort)

Five phases, a fifth of --duration each:
  1. online alone;
  2. online + batch under kubelet's defaults only (besteffort cpu.shares=2, no colocd);
  3. online + batch under colocd (`colocd run` with its default settings);
  4. kubelet's defaults again (colocd stops and writes back what it changed);
  5. colocd again (started anew, on the history its first run left).
kubelet's defaults and colocd take turns so that a drift of this machine's speed over
the minute weighs on both alike; the summary pools each one's turns.

Every second a line shows the elapsed time, the phase, online's p99 latency, batch's
throughput (in cores of work) and colocd's current batch-cpu/batch-memory budgets with
the reason. At the end: a table comparing online alone, kubelet's defaults and colocd,
each with its turns pooled (online p50/p99/p99.9, batch throughput, budgets, and the CPU
other work on the machine took), a sentence reading it
(a gap in latency is called only when the run's noise, its seconds resampled, cannot
explain it), and a PNG plot of latency, throughput and budgets over time.

Everything it creates is removed at the end, also on Ctrl-C or SIGTERM: colocd is stopped
first (it writes back every cgroup value it changed), then the workloads, then the tree.
Needs root (cgroup v1 or a delegated cgroup v2 subtree) and the `demo` extra
(matplotlib) for the plot; `make demo` installs both."""
EPILOG = """\
examples:
  sudo colocd demo
  sudo colocd demo --duration 90 --plot /tmp/demo.png

exit status: 0 done, 1 the demo could not be set up or run (one line says why),
130 interrupted by Ctrl-C (143 by SIGTERM), after cleaning up."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        metavar="S",
        type=seconds_between(MIN_PHASE_S * PHASE_COUNT, 3600),
        default=DEFAULT_DURATION_S,
        help=f"seconds for the five phases together (default {DEFAULT_DURATION_S:g})",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        type=Path,
        default=DEFAULT_PLOT,
        help=f"where the plot goes (default {DEFAULT_PLOT} in the current directory)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lab.demo.plot import write_plot
    from lab.demo.report import live_line, summary_table, verdict
    from lab.demo.run import run_demo
    from lab.errors import DemoError

    out = sys.stdout

    def live(second: Second) -> None:
        out.write(live_line(second) + "\n")
        out.flush()

    def say(line: str) -> None:
        out.write(f"== {line}\n")
        out.flush()

    outcome = run_demo(args.duration, live, say)
    for line in outcome.cleanup:
        say(f"clean-up: {line}")
    if outcome.interrupted_by is not None:
        name = signal.Signals(outcome.interrupted_by).name
        print(
            f"colocd: demo interrupted by {name}; everything it created was removed",
            file=sys.stderr,
        )
        return 128 + outcome.interrupted_by
    out.write("\n" + summary_table(outcome.phases) + "\n\n" + verdict(outcome.phases) + "\n")
    try:
        path = write_plot(args.plot, outcome.seconds, outcome.phases, outcome.t0)
    except DemoError as err:
        Reporter().warning(str(err))
        return 1
    out.write(f"\nplot: {path}\n")
    out.flush()
    return 0
