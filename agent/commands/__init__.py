"""One module per `colocd` subcommand; each exposes `register(subparsers)`."""

from agent.commands import classify, demo, discover, policy, revert, run, simulate, status

COMMANDS = (classify, discover, run, status, policy, revert, simulate, demo)

__all__ = ["COMMANDS"]
