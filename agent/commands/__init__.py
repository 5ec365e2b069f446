"""One module per `colocd` subcommand; each exposes `register(subparsers)`."""

from agent.commands import classify, discover, policy, revert, simulate

COMMANDS = (classify, discover, policy, revert, simulate)

__all__ = ["COMMANDS"]
