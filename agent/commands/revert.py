"""`colocd revert`: write back every cgroup value colocd changed, from its journal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.act.shaping import JOURNAL as NETWORK_JOURNAL
from agent.act.shaping import revert_network
from agent.cli_support import Reporter, add_output_flag
from agent.commands.discover import add_cgroup_flags
from agent.errors import InputError
from agent.inputs import check_file
from agent.report.output import emit
from isolation.cgroups import Cgroups
from isolation.detect import detect_hierarchy
from isolation.errors import IsolationError
from isolation.executor import Executor, Outcome
from isolation.journal import FILENAME, MAX_BYTES, Journal
from isolation.owner import NodeLock

HELP = "restore every cgroup value colocd changed (from the journal in --state-dir)"
DESCRIPTION = f"""\
Read the journal ({FILENAME}) in the state directory, write each original value back (parents
and children in a safe order, cpu.shares after cpu.idle), and drop what was restored or whose
cgroup no longer exists. Entries that fail stay for the next attempt. Network shaping
colocd installed ({NETWORK_JOURNAL}: its qdiscs, ifb and nftables table, in this network
namespace) is removed too. It refuses to run while an agent holds the state directory.

A journal a crash damaged (NUL bytes, a line cut short, a checksum that does not match)
is reverted as far as it is intact: every intact record is restored, and each line that
could not be read is reported and kept in the file, never deleted.

Exit status: 0 when everything was restored, 1 when something failed, some lines could not
be read or the journal is unusable, 2 for bad usage."""

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
    lock = NodeLock(Path(args.state_dir), None)  # never under a running agent
    journal_file = Path(args.state_dir) / FILENAME
    try:
        check_file(journal_file, MAX_BYTES)  # a FIFO, a device or a huge file is no journal
    except InputError as err:
        report.error(f"read journal {journal_file}: {err.reason}")
        return 1
    try:
        hierarchy = detect_hierarchy(args.cgroup_root)
        cgroups = Cgroups(hierarchy)
        lock.acquire()
        for line in revert_network(args.state_dir):
            print(f"colocd: network: {line}", file=sys.stderr)
        journal = Journal(args.state_dir, str(hierarchy.root), cgroups.version)
        result = Executor(cgroups, journal, force_rewrite_s=0).revert()
    except IsolationError as err:
        report.error(str(err))
        return 1
    finally:
        lock.release()
    for d in journal.damaged:
        report.error(f"journal {journal.path}: line {d.line} unreadable, kept: {d.reason}")
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
    if not rows and not journal.damaged:
        report.warning(f"nothing to revert in {args.state_dir}")
    return 1 if result.of(Outcome.FAILED) or journal.damaged else 0
