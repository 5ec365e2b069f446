"""One module per `colocd` subcommand; each exposes `register(subparsers)`."""

from agent.commands import classify, discover, revert

COMMANDS = (classify, discover, revert)

__all__ = ["COMMANDS"]
