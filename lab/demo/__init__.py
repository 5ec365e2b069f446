"""`colocd demo`: colocation shown on this very machine, with the real agent.

- `agent_child`: `colocd run` as a child process over a kubelet-like tree (the benchmarks
  run the agent through it too).
"""

from lab.demo.agent_child import AgentProcess

__all__ = ["AgentProcess"]
