"""Errors raised by the lab (the demo, its workloads and tree); each prints as one line.

AgentError (agent.errors)
 ├── WorkloadError      a demo/benchmark workload could not start or reported garbage
 └── DemoError          `colocd demo` (or a benchmark's agent child) could not set up or run
"""

from __future__ import annotations

from agent.errors import AgentError

__all__ = ["DemoError", "WorkloadError"]


class WorkloadError(AgentError):
    pass


class DemoError(AgentError):
    pass
