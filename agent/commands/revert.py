"""`colocd revert`: write back every cgroup value colocd changed, from its journal."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.cli_support import Reporter, add_output_flag
from agent.commands.discover import add_cgroup_flags
from agent.errors import InputError
from agent.inputs import check_file
from agent.report.output import emit
from isolation.cgroups import Cgroups
from isolation.detect import detect_hierarchy
from isolation.errors import IsolationError
from isolation.executor import Executor, Outcome
from isolation.journal import FILENAME, Journal

HELP = "restore every cgroup value colocd changed (from the journal in --state-dir)"
DESCRIPTION = f"""\
Read the journal ({FILENAME}) in the state directory, write each original value back (parents
and children in a safe order, cpu.shares after cpu.idle), and drop what was restored or whose
cgroup no longer exists. Entries that fail stay for the next attempt.

Exit status: 0 when everything was restored, 1 when something failed or the journal is
unusable, 2 for bad usage."""

# About 400 000 journaled values; a bigger file (or a FIFO, a device) is not colocd's journal.
MAX_JOURNAL_BYTES = 64 * 2**20

COLUMNS = (("RESULT", "result"), ("KNOB", "knob"), ("CGROUP", "cgroup"), ("REASON", "reason"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "revert",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--state-dir", metavar="DIR", required=True, help="colocd's state directory")
    add_cgroup_flags(p)
    add_output_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = Reporter()
    journal_file = Path(args.state_dir) / FILENAME
    try:
        check_file(journal_file, MAX_JOURNAL_BYTES)
    except InputError as err:
        report.error(f"read journal {journal_file}: {err.reason}")
        return 1
    try:
        hierarchy = detect_hierarchy(args.cgroup_root)
        cgroups = Cgroups(hierarchy)
        journal = Journal(args.state_dir, str(hierarchy.root), cgroups.version)
        result = Executor(cgroups, journal, force_rewrite_s=0).revert()
    except IsolationError as err:
        report.error(str(err))
        return 1
    rows = [
        {
            "result": r.outcome.value,
            "knob": r.write.knob,
            "cgroup": "/" + r.write.cgroup,
            "reason": r.reason,
        }
        for r in result.results
    ]
    emit(rows, args.output, COLUMNS)
    for r in result.failed:
        report.error(r.reason)
    if not rows:
        report.warning(f"nothing to revert in {args.state_dir}")
    return 1 if result.of(Outcome.FAILED) else 0
