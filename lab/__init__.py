"""The lab: what shows and measures colocd, never part of the running agent. In: a machine to
try things on. Out: a kubelet-like cgroup tree (`kubelet_tree`), workloads that play online
and batch pods (`workloads`), and `colocd demo` (`demo`). Tests and benchmarks use it too.
"""

__all__: list[str] = []
