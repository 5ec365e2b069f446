"""From the kernel to the brain's readings. In: pods and the cgroup tree. Out: where each pod
lives (`topology`), per-tier readings (`sampler`), and surges between ticks (`fastpath`).
"""

__all__: list[str] = []
