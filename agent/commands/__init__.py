"""One module per `colocd` subcommand; each exposes `register(subparsers)`."""

from agent.commands import classify

COMMANDS = (classify,)

__all__ = ["COMMANDS"]
