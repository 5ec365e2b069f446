"""One module per `colocd` subcommand; each exposes `register(subparsers)`."""

from agent.commands import classify, discover, revert, simulate

COMMANDS = (classify, discover, revert, simulate)

__all__ = ["COMMANDS"]
