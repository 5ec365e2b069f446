"""`colocd simulate`: replay usage traces through colocd's brain, the peers' formulas and an
oracle, and judge colocd against them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from agent.cli_support import (
    Reporter,
    add_output_flag,
    format_labels,
    parse_labels,
    report_policy_load,
    seconds_between,
)
from agent.config import read_mapping, validated
from agent.errors import ConfigError, PolicyError, TraceError
from agent.policy.load import PolicyLoad, load_policies
from agent.policy.resolve import resolve
from agent.report.offer_plot import write_offer_plot
from agent.report.output import emit
from agent.sources.trace import read_trace
from qos.baselines import Oracle, peers
from qos.compare import OURS, Bar, bars, oracle_share, pareto_front
from qos.replay import ColocdPolicy, ReplayResult, TraceRow, at_tick, replay
from qos.settings import DEFAULT_QOS_SETTINGS, QosSettings

HELP = "replay usage traces through colocd's brain, the peers' reclaim formulas and an oracle"
DESCRIPTION = """\
Replay time series of node usage through the same decide() code the agent runs (no I/O,
no clocks), through the peers' reclaim formulas at their defaults (qos/baselines.py cites
each from its source), and through an oracle:
  koordinator  koordlet's estimator: decaying histograms (CPU p95, half-life 12 h; memory
               p98, 24 h) x 1.10; pods count at their request for a 24-h cold start (a
               trace has no requests: the whole node); update on a 10 % change or 300 s
  volcano      Volcano agent: (allocatable - usage) x 60 %, every 10 s, usage an
               exponentially weighted history (each newer sample weighs twice as much)
  crane        allocatable x (1 - 10 % reserve) - max(p99 of 24 h, current), every 10 s
               (a reference: Crane has had no commit since 2024-12)
  katalyst     rama PID on the shared pool's usage ratio (target 0.8): log-ratio error,
               gains 0.05 up / 0.009 down, dead band, steps clamped to +10 / -2 cores;
               memory capacity - 5Gi reserve - use x 1.1; never published below its
               minimum report of 4 cores and 5Gi
  oracle       offers exactly the next row's idle capacity: the bound of reclaim with no
               violation (not a peer)

Each row covers the time until the next. A policy observes a row at its end and sets
what batch may use during the next row. Batch takes what it is offered (up to its
demand); online is left the rest. Reported per trace and policy:
  CORE-H / GIB-H     reclaimed core-hours and GiB-hours (what batch used)
  CPU-V / MEM-V      violations: episodes / total seconds / worst shortfall (cores, GiB);
                     a violation is time in which online demand exceeded what was left to
                     it while batch held some
  ORACLE%            reclaim as a share of the oracle's (CPU / memory)
  FRONT              * on the Pareto front of reclaim (CPU, memory) against violation
                     seconds (CPU, memory); the oracle is left out
Then one line per trace: colocd against the bar (no more violation seconds than the
safest peer; at least the reclaim of every peer with no more violation seconds).

--tick SECONDS decides at least that often instead of once a row, as the agent does (its
tick is 1 s): each row is split into pieces SECONDS long, holding its readings. Every
policy is asked at every piece, and each keeps its own pace (the peers' 5-300 s
intervals). A miss then lasts until the next decision rather than a whole row. It is
slow on long traces: at 1 s a 72-h trace is 259,200 decisions for each policy, about 4-5
minutes for all of them on one core; a line on stderr says when each trace starts.

Trace: CSV with a header row, or JSON lines (one object per row), sniffed from the
content; a directory stands for every *.csv and *.jsonl in it. Columns (CPU in
millicores, memory in bytes, time in seconds):
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

colocd runs with its built-in settings unless --policy says otherwise. --policy FILE
takes either of two things:
  ColocationPolicy documents (files or directories, as `kubectl get colocationpolicies
    -o yaml` prints them; repeat --policy for more): layered as the agent layers them on
    the node that --node and --labels describe (no --node: a node that no Node policy
    names; no --labels: one that no NodePool policy selects). A line on stderr names the
    policies that applied. Only the brain's settings (reclaim, predictor, margin) change
    the replay. An invalid policy is reported and nothing is replayed.
  one YAML or JSON mapping of the brain's own settings (QosSettings, snake_case, with
    internal knobs a policy does not expose), e.g. {"margin": {"target": 30}}.
The peers always run at their own defaults."""
EPILOG = """\
examples:
  colocd simulate --trace examples/traces
  colocd simulate --trace examples/traces/bursty.csv -o json | jq .cpu_violation_seconds
  colocd simulate --trace examples/traces/bitbrains_rnd_vm185.csv --plot vm185.png
  colocd simulate --trace examples/traces/bitbrains_rnd_vm392.csv --tick 1
  colocd simulate --trace examples/traces --policy deploy/examples/ --node gpu-node-7
  colocd simulate --trace trace.jsonl --policy overrides.yaml"""

COLUMNS = (
    ("TRACE", "trace"),
    ("POLICY", "name"),
    ("CORE-H", "reclaimed_core_hours"),
    ("GIB-H", "reclaimed_gib_hours"),
    ("CPU-V", "cpu_v"),
    ("MEM-V", "memory_v"),
    ("ORACLE%", "oracle_pct"),
    ("FRONT", "front"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--trace",
        required=True,
        action="append",
        metavar="FILE",
        help="CSV or JSONL trace, a directory of them, or -; repeat for more",
    )
    p.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        help="ColocationPolicy file or directory (repeat for more), or one file of "
        "QosSettings overrides",
    )
    p.add_argument(
        "--node", metavar="NAME", help="the node the policies are resolved for (Node scope)"
    )
    p.add_argument(
        "--labels",
        type=parse_labels,
        default={},
        metavar="K=V,...",
        help="the node's labels, which decide the NodePool policies (default: none)",
    )
    p.add_argument(
        "--tick",
        type=seconds_between(0.1, 3600),
        metavar="SECONDS",
        help="decide at least every SECONDS (1 = the agent's tick), not once a row",
    )
    p.add_argument(
        "--plot", metavar="PNG", help="draw the first trace's offers over time (needs matplotlib)"
    )
    add_output_flag(p, ("table", "json"))
    p.set_defaults(func=run)


def load_settings(
    paths: list[str] | None, node: str | None = None, labels: Mapping[str, str] | None = None
) -> QosSettings:
    """colocd's settings for the replay: the built-in ones; the ColocationPolicies in `paths`
    resolved for the node named and labelled so; or one file of QosSettings overrides."""
    labels = labels or {}
    if not paths:
        if node is not None or labels:
            raise ConfigError("simulate: --node and --labels choose among the policies of --policy")
        return DEFAULT_QOS_SETTINGS
    loaded = load_policies(paths)
    if loaded.policies or any(isinstance(e, PolicyError) for e in loaded.errors):
        return _resolved(loaded, paths, node or "", labels)
    for path in paths:
        if Path(path).is_dir():
            raise ConfigError(
                f"load policy {path}: no ColocationPolicy documents in this directory"
            )
    if len(paths) > 1:
        raise ConfigError(
            f"load policy {' '.join(paths)}: none holds a ColocationPolicy, and settings "
            "overrides come in one file"
        )
    if node is not None or labels:
        raise ConfigError(
            f"load policy {paths[0]}: --node and --labels choose among ColocationPolicies; "
            "this file holds settings overrides"
        )
    return validated(QosSettings, read_mapping(paths[0], "load policy"), f"load policy {paths[0]}")


def _resolved(
    loaded: PolicyLoad, paths: list[str], node: str, labels: Mapping[str, str]
) -> QosSettings:
    """The brain's settings of the policies in force on the node; a bad policy stops it all."""
    report = Reporter()
    report_policy_load(loaded, report)
    if report.failed:
        raise ConfigError(f"load policy {' '.join(paths)}: invalid (above); nothing was replayed")
    resolution = resolve((p.policy for p in loaded.policies), node, labels)
    who = f"{f'node {node}' if node else 'an unnamed node'} (labels: {format_labels(labels)})"
    for tie in resolution.ties:
        report.warning(f"resolve policy for {who}: {tie}")
    if resolution.problems:
        more = len(resolution.problems) - 1
        raise ConfigError(
            f"resolve policy for {who}: {resolution.problems[0]}"
            + (f" (and {more} more)" if more else "")
        )
    if not resolution.applied:
        report.warning(f"no ColocationPolicy applies to {who}: colocd runs on built-in defaults")
    else:
        applied = ", ".join(str(s) for s in resolution.applied)
        print(f"simulate: policies for {who}, weakest first: {applied}", file=sys.stderr)
    return resolution.qos_settings()


def trace_files(paths: list[str]) -> list[str]:
    """Each path as given, a directory replaced by its traces in name order."""
    out: list[str] = []
    for path in paths:
        p = Path(path)
        if path != "-" and p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix in (".csv", ".jsonl"))
            if not found:
                raise TraceError(path, None, "no *.csv or *.jsonl traces in this directory")
            out += found
        else:
            out.append(path)
    return out


class TraceReport(NamedTuple):
    trace: str
    results: list[ReplayResult]  # colocd, the peers, the oracle last
    bars: tuple[Bar, Bar]
    front: set[str]


def compare_trace(
    name: str, rows: list[TraceRow], settings: QosSettings, *, series: bool = False
) -> TraceReport:
    """colocd, every peer and the oracle on one trace, judged."""
    policies = [ColocdPolicy(settings), *peers(), Oracle(rows)]
    results = [replay(rows, p, series=series) for p in policies]
    return TraceReport(name, results, bars(results[0], results[1:]), pareto_front(results))


def _record(report: TraceReport, r: ReplayResult) -> dict[str, object]:
    cpu_share, mem_share = oracle_share(r, report.results[-1])
    row: dict[str, object] = {"trace": report.trace, **r.as_row()}
    row["oracle_share_cpu"] = round(cpu_share, 4)
    row["oracle_share_memory"] = round(mem_share, 4)
    row["pareto_front"] = r.name in report.front
    if r.name == OURS:
        row["bar"] = {b.resource: {"holds": b.holds, "line": b.line()} for b in report.bars}
    return row


def _table_row(record: dict[str, object]) -> dict[str, object]:
    def v(kind: str, unit: str) -> str:
        worst = record[f"{kind}_worst_shortfall_{unit}"]
        return f"{record[kind + '_violations']}/{record[kind + '_violation_seconds']:g}s/{worst:g}"

    return {
        **record,
        "cpu_v": v("cpu", "cores"),
        "memory_v": v("memory", "gib"),
        "oracle_pct": (
            f"{record['oracle_share_cpu'] * 100:.0f}/{record['oracle_share_memory'] * 100:.0f}"
        ),
        "front": "*" if record["pareto_front"] else "",
    }


def _cut(name: str, rows: list[TraceRow], tick: float) -> list[TraceRow]:
    """The trace cut at `tick` (`at_tick`), saying how long it has become. One trace at a
    time: cut, a trace of 60-300-s rows holds 60-300 times as many at 1 s."""
    cut = at_tick(rows, tick)
    print(f"simulate: {name}: {len(cut):,} decisions each", file=sys.stderr, flush=True)
    return cut


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.policy, args.node, args.labels)
    files = trace_files(args.trace)
    traces = [(Path(f).name if f != "-" else "-", read_trace(f)) for f in files]
    reports = []
    for i, (name, read) in enumerate(traces):
        rows = read if args.tick is None else _cut(name, read, args.tick)
        reports.append(compare_trace(name, rows, settings, series=bool(args.plot) and i == 0))
    if args.plot:
        write_offer_plot(Path(args.plot), reports[0].trace, reports[0].results)
    records = [_record(rep, r) for rep in reports for r in rep.results]
    if args.output == "json":
        emit(records, "json", COLUMNS)
        return 0
    emit([_table_row(r) for r in records], "table", COLUMNS)
    print("CPU-V/MEM-V: episodes/seconds/worst shortfall (cores, GiB); ORACLE%: cpu/memory")
    for rep in reports:
        verdict = "holds" if all(b.holds for b in rep.bars) else "FAILS"
        print(f"{rep.trace}: colocd's bar {verdict}: " + "; ".join(b.line() for b in rep.bars))
    return 0
