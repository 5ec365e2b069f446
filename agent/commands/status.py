"""`colocd status`: what the running agent last decided, and why."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agent.cli_support import Reporter, add_output_flag
from agent.config import DEFAULT_STATE_DIR
from agent.errors import StatusError
from agent.report.output import render_table
from agent.report.status import FILENAME, BudgetStatus, Status, read_status, staleness
from qos.budget import Resource
from qos.units import Unit, format_amount

HELP = "show the running agent's budgets and why they have their values"
DESCRIPTION = f"""\
Print the status the running agent writes after every tick ({FILENAME} in its state
directory): the batch budgets it offers (colocd.io/batch-cpu, -memory, -gpu), each with the
formula that produced it, the CPU safety margin and the indicator behind it, the batch
tier's settings, anything that made it run degraded, the last apply report and the fast
path's clamps. With -o json the file's content is printed as one JSON object.

Exit status: 0 when the status is fresh, 1 when there is no status (the agent is not
running here, or uses another --state-dir) or it cannot be read, 3 when it is stale (older
than 3 ticks: the agent stopped or is stuck; or stamped in the future), 2 for bad usage."""
EPILOG = """\
examples:
  colocd status
  colocd status --state-dir /var/lib/colocd -o json | jq .budgets"""

EXIT_STALE = 3
COLUMNS = (("RESOURCE", "resource"), ("BATCH", "amount"), ("STATE", "state"), ("WHY", "why"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        default=str(DEFAULT_STATE_DIR),
        help=f"the agent's state directory (default {DEFAULT_STATE_DIR})",
    )
    add_output_flag(p, ("table", "json"))
    p.set_defaults(func=run)


def _amount(b: BudgetStatus) -> str:
    return format_amount(b.amount, Unit(b.unit)) if b.unit in set(Unit) else str(b.amount)


def _ago(seconds: float) -> str:
    if seconds < 0:
        return f"{-seconds:g}s in the future"
    return f"{seconds:.1f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def render(status: Status, now: float) -> str:
    age = status.age(now)
    pods = ", ".join(f"{tier} {n}" for tier, n in status.pods.items())
    lines = [
        f"node {status.node}: tick {status.ticks} {_ago(age)} (every {status.tick_s:g}s); "
        f"pods: {pods}"
    ]
    rows = [
        {
            "resource": b.resource,
            "amount": _amount(b),
            "state": "degraded" if b.degraded else "ok",
            "why": b.reason,
        }
        for b in status.budgets
    ]
    lines.append(render_table(rows, COLUMNS))
    m = status.margin
    cpu = next((b for b in status.budgets if b.resource == Resource.CPU.value), None)
    if cpu is not None and cpu.predicted_online is not None:
        lines.append(
            f"online CPU predicted: {format_amount(cpu.predicted_online, Unit.MILLICORES)}"
        )
    lines.append(f"margin: {m.fraction * 100:.1f}% = {m.millicores}m; {m.reason}")
    lines += [f"batch tier: {why}" for why in status.batch_tier]
    lines += [f"DEGRADED: {why}" for why in status.degraded]
    lines += [f"note: {why}" for why in status.notes]
    lines += [f"eviction: {why}" for why in status.evictions]
    counts = ", ".join(f"{k} {v}" for k, v in status.apply.counts.items()) or "nothing applied"
    lines.append(f"last apply: {counts}")
    lines += [f"  {p}" for p in status.apply.problems]
    fast = status.fast_path
    line = f"fast path: {fast.mode}"
    if fast.detail:
        line += f" ({fast.detail})"
    line += f"; {fast.clamps} clamps"
    if fast.recent:
        last = fast.recent[-1]
        line += (
            f", last {_ago(now - last.at)}: {last.cap} in {last.reaction_s * 1000:.0f} ms "
            f"({last.trigger})"
        )
    lines.append(line)
    lines += _gpu_lines(status)
    return "\n".join(lines)


def _gpu_lines(status: Status) -> list[str]:
    """Per GPU: use, its share of batch-gpu and why; mismatches and freezes."""
    g = status.gpu
    if g is None:
        return ["gpu: none on this node"]
    lines = []
    for d in g.devices:
        if d.error is not None:
            lines.append(f"gpu {d.index}: not read: {d.error}")
            continue
        use = "?" if d.online_percent is None else f"{d.online_percent:.0f}%"
        batch = "?" if d.batch_percent is None else f"{d.batch_percent:.0f}%"
        state = "SURGED, " if d.surged else ""
        lines.append(f"gpu {d.index} ({d.uuid}): online {use}, batch {batch}; {state}{d.reason}")
    lines += [f"gpu process: {p}" for p in g.processes]
    lines += [f"GPU MISMATCH: {m}" for m in g.mismatches]
    lines += [f"gpu: {why}" for why in [*g.frozen, *g.thawed, *g.notes]]
    return lines


def run(args: argparse.Namespace) -> int:
    report = Reporter()
    try:
        status = read_status(Path(args.state_dir))
    except StatusError as err:
        report.error(str(err))
        return 1
    now = time.time()
    if args.output == "json":
        sys.stdout.write(status.model_dump_json() + "\n")
    else:
        sys.stdout.write(render(status, now) + "\n")
    sys.stdout.flush()
    why = staleness(status, now)
    if why is not None:
        report.warning(f"status in {args.state_dir} is {why}")
        return EXIT_STALE
    return 0
