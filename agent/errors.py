"""Errors raised by `agent/`. Each prints as one line: "<action> <target>: <reason>".

AgentError
 ├── ManifestError      a document could not be read or is not a valid Pod
 ├── ConfigError        settings or flags are unusable
 ├── TraceError         a `colocd simulate` trace could not be read
 └── SourceError        a pod or policy source failed (API server away, bad directory)
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error `agent/` raises."""


class ManifestError(AgentError):
    def __init__(self, source: str, index: int | None, reason: str) -> None:
        where = source if index is None else f"{source}[doc {index}]"
        super().__init__(f"read {where}: {reason}")
        self.source = source
        self.index = index
        self.reason = reason


class ConfigError(AgentError):
    pass


class SourceError(AgentError):
    pass


class TraceError(AgentError):
    def __init__(self, source: str, line: int | None, reason: str) -> None:
        where = source if line is None else f"{source} line {line}"
        super().__init__(f"read trace {where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason
