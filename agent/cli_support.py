"""Small helpers shared by the subcommands: the -o flag, node labels and stderr reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.errors import PolicyError
from agent.policy.load import PolicyLoad
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


def parse_labels(text: str) -> dict[str, str]:
    """An argparse `type` for a node's labels, "K=V,K2=V2"."""
    labels = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"label {item!r} is not KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def format_labels(labels: Mapping[str, str]) -> str:
    """A node's labels as --labels takes them, "none" for none."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


def report_policy_load(loaded: PolicyLoad, report: Reporter) -> None:
    """What reading ColocationPolicy files skipped or refused, one line each."""
    for warning in loaded.warnings:
        report.warning(warning)
    for err in loaded.errors:
        if isinstance(err, PolicyError) and len(err.problems) > 1:
            for path, message in err.problems:
                report.error(f"validate {err.where}: {path + ': ' if path else ''}{message}")
        else:
            report.error(str(err))
