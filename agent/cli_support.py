"""Small helpers shared by the subcommands: the -o flag and stderr reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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


def seconds_between(least: float, most: float) -> Callable[[str], float]:
    """An argparse `type` for a number of seconds from `least` to `most`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not least <= value <= most:  # nan fails this too
            raise argparse.ArgumentTypeError(f"{value:g} s: give {least:g} to {most:g} seconds")
        return value

    return parse


@dataclass
class Reporter:
    """One line per problem on stderr; remembers whether anything failed."""

    failed: bool = False

    def error(self, message: str) -> None:
        self.failed = True
        print(f"colocd: error: {message}", file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        print(f"colocd: warning: {message}", file=sys.stderr, flush=True)
