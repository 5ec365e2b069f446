"""Small helpers shared by the subcommands: the -o flag and stderr reporting."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from agent.report.output import FORMATS


def add_output_flag(parser: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=formats,
        default=formats[0],
        help=f"output format (default {formats[0]}; json is one object per line)",
    )


@dataclass
class Reporter:
    """One line per problem on stderr; remembers whether anything failed."""

    failed: bool = False

    def error(self, message: str) -> None:
        self.failed = True
        print(f"colocd: error: {message}", file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        print(f"colocd: warning: {message}", file=sys.stderr, flush=True)
