"""Errors raised by `agent/`. Each prints as one line: "<action> <target>: <reason>".

AgentError
 ├── ManifestError      a document could not be read or is not a valid Pod
 ├── PolicyError        a ColocationPolicy document is invalid (file, document, field path)
 ├── ConfigError        settings or flags are unusable
 ├── TraceError         a `colocd simulate` trace could not be read
 ├── PlotError          a `colocd simulate` plot could not be drawn or written
 ├── SourceError        a pod or policy source failed (API server away, bad directory)
 ├── NotifyError        a message to systemd's $NOTIFY_SOCKET could not be sent
 ├── StatusError        the agent's status file cannot be written or read
 ├── InputError         an input file is too big, too deep, not text or not a plain file
 └── KubeError          the Kubernetes API refused or did not answer (only sources.kube raises it)
      ├── APIUnavailable    no usable answer: connection refused/reset, timeout, 5xx; retry later
      ├── APIForbidden      401/403: credentials or RBAC do not allow the call
      ├── APINotFound       404: the object (or the resource type) does not exist
      ├── APIConflict       409: already exists, or a stale resourceVersion
      ├── APIGone           410: the resourceVersion is too old; list again
      ├── APIInvalid        400/422: the server rejected the body
      └── TooManyRequests   429: back off (`retry_after_s` when the server said Retry-After)
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


class PolicyError(AgentError):
    """`where` names the file and document (or the API object); `path` the field.
    `problems` holds every (path, reason) found when there were several."""

    def __init__(
        self, where: str, reason: str, path: str = "", problems: tuple[tuple[str, str], ...] = ()
    ) -> None:
        field = f"{path}: " if path else ""
        super().__init__(f"validate {where}: {field}{reason}")
        self.where = where
        self.path = path
        self.reason = reason
        self.problems = problems or ((path, reason),)


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


class PlotError(AgentError):
    pass


class StatusError(AgentError):
    pass


class InputError(AgentError):
    """Only a reason ("larger than 16777216 bytes"): the caller names the action and file.
    `missing`: the file does not exist (callers often say more about that case)."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing


class KubeError(AgentError):
    """`status` is the HTTP status (None when no answer came); `reason` is cut short."""

    def __init__(
        self,
        action: str,
        target: str,
        reason: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{action} {target}: {reason}")
        self.action = action
        self.target = target
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


class APIUnavailable(KubeError):
    pass


class APIForbidden(KubeError):
    pass


class APINotFound(KubeError):
    pass


class APIConflict(KubeError):
    pass


class APIGone(KubeError):
    pass


class APIInvalid(KubeError):
    pass


class TooManyRequests(KubeError):
    pass


class NotifyError(AgentError):
    pass
