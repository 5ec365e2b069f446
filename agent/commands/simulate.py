"""`colocd simulate`: replay a usage trace through colocd's brain and the peers' formulas."""

from __future__ import annotations

import argparse

from agent.cli_support import add_output_flag
from agent.config import read_mapping, validated
from agent.report.output import emit
from agent.sources.trace import read_trace
from qos.baselines import Crane, Koordinator
from qos.replay import ColocdPolicy, compare, replay
from qos.settings import DEFAULT_QOS_SETTINGS, QosSettings

HELP = "replay a usage trace through colocd's brain and the peers' reclaim formulas"
DESCRIPTION = """\
Replay a time series of node usage through the same decide() code the agent runs (no
I/O, no clocks), and through baselines built from the peers' published formulas:
  koordinator  usage policy (cpu 60 %, memory 65 % thresholds, every 60 s, publish on a
               10 % change or after 300 s) plus koordlet's BE CPU suppress at 65 %
  crane        allocatable x (1 - 10 % reserve) - max(p99 of 24 h, current), every 10 s,
               publish on a 10 % change (Crane ships no default reserve; 10 % is ours)

Each row covers the time until the next. A policy observes a row at its end and sets
what batch may use during the next row. Batch takes what it is offered (up to its
demand); online is left the rest. Reported per policy:
  reclaimed_core_hours / reclaimed_gib_hours  what batch used
  offered_idle_fraction (_memory)   share of the true idle capacity (capacity - system -
                                    online demand) offered to batch
  violation_seconds                 time in which online demand exceeded what was left to
                                    it while batch held some (cpu_/memory_ split them)
  mean_online_cpu_psi               modelled online CPU PSI some avg10 (Erlang C of
                                    online demand on the cores left to it), in percent,
                                    unless the trace gives online_cpu_psi

Trace: CSV with a header row, or JSON lines (one object per row), sniffed from the
content. Columns (CPU in millicores, memory in bytes, time in seconds):
  t                          row start, increasing                      required
  cpu_capacity_milli         node CPU                                   required
  online_cpu_milli           online + dedicated demand                  required
  batch_cpu_demand_milli     what batch would use if offered all        required
  system_cpu_milli           node daemons and system pods               optional
  memory_capacity_bytes      node memory (no memory columns: CPU only)  optional
  online_memory_bytes        online working set                         optional
  batch_memory_demand_bytes  what batch would hold if offered all       optional
  system_memory_bytes        system working set                         optional
  online_cpu_psi             measured online CPU PSI some avg10 (%)     optional
An empty cell (or JSON null) is a missing reading: policies see none, and the truth
keeps the column's last value. The first row must have every required column.

--policy FILE is, for now, a YAML or JSON mapping of colocd settings (QosSettings)
overriding the defaults, e.g. {"margin": {"target": 20}}; ColocationPolicy resources
will be accepted here once they exist."""
EPILOG = """\
examples:
  colocd simulate --trace examples/traces/diurnal.csv
  colocd simulate --trace examples/traces/bursty.csv -o json | jq .violation_seconds
  colocd simulate --trace trace.jsonl --policy overrides.yaml"""

COLUMNS = (
    ("POLICY", "name"),
    ("CORE-H", "reclaimed_core_hours"),
    ("GIB-H", "reclaimed_gib_hours"),
    ("IDLE-CPU", "offered_idle_fraction"),
    ("IDLE-MEM", "offered_idle_fraction_memory"),
    ("VIOL-S", "violation_seconds"),
    ("CPU-VIOL-S", "cpu_violation_seconds"),
    ("MEM-VIOL-S", "memory_violation_seconds"),
    ("PSI%", "mean_online_cpu_psi"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--trace", required=True, metavar="FILE", help="CSV or JSONL trace, or -")
    p.add_argument("--policy", metavar="FILE", help="YAML/JSON QosSettings overrides")
    add_output_flag(p, ("table", "json"))
    p.set_defaults(func=run)


def load_settings(path: str | None) -> QosSettings:
    if path is None:
        return DEFAULT_QOS_SETTINGS
    return validated(QosSettings, read_mapping(path, "load policy"), f"load policy {path}")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.policy)
    rows = read_trace(args.trace)
    ours = replay(rows, ColocdPolicy(settings))
    others = [replay(rows, Koordinator()), replay(rows, Crane())]
    verdicts = [compare(ours, theirs) for theirs in others]
    records = [ours.as_row(), *(r.as_row() for r in others)]
    if args.output == "json":
        records[0]["dominates"] = [v.baseline for v in verdicts if v.dominates]
        records[0]["verdicts"] = [v.line for v in verdicts]
        emit(records, "json", COLUMNS)
        return 0
    emit(records, "table", COLUMNS)
    for v in verdicts:
        print(v.line)
    return 0
