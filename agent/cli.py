"""The `colocd` command line: one parser, one module per subcommand (agent/commands/)."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from agent.commands import COMMANDS
from agent.errors import AgentError

DESCRIPTION = """\
colocd: a node agent for Kubernetes colocation.

It puts every pod on the node into a QoS tier (system, dedicated, online, batch), predicts
what the online tiers need, hands the idle CPU, memory and GPU to batch pods, and enforces
that split with cgroups (v2 and v1) and tc shaping. Every decision carries a reason."""


def _version() -> str:
    """The installed distribution's version (what the image and the wheel carry)."""
    try:
        return version("colocd")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colocd",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'colocd COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"colocd {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except AgentError as err:
        print(f"colocd: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("colocd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
