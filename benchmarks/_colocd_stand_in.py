"""STAND-IN for the colocd agent in the benchmarks' "colocd" setups.

These functions write, once, what the agent's enforcement is expected to write for the
batch tier on this kernel (cgroup v1, see the testbed notes in the project's design docs);
they were written before the agent's tick loop existed. `apply_expected_colocd_enforcement`
is the single entry point, called once per "colocd" setup by bench_effectiveness.py and
bench_memory_pressure.py: replace those two calls with running the real agent (`colocd
run --pods DIR --kubelet-cgroup-root <tree root>`) on the tree, and delete this module.

CPU: the besteffort level gets `cpu.idle=1` (SCHED_IDLE against online), and no CFS quota
unless online's demand leaves batch too little: a quota that throttles every period hurts
online's wake-ups (measured ~5x worse tails), so it is the last resort, not the default.

Memory: the besteffort level gets a hard limit (v1 `memory.limit_in_bytes`, what v2's
`memory.high`/`memory.max` would be) sized from online's *real* working set, page cache
included, so batch reclaims from itself, or is OOM-killed inside its own level, before it
can evict online's cache.
"""

from __future__ import annotations

from typing import NamedTuple

from benchmarks._tree import CFS_PERIOD_US, BenchTree, CgroupDir
from qos.k8s_qos import QOSClass

# Online's demand is padded by this much before batch gets what is left (Katalyst uses 1.25).
CPU_DEMAND_HEADROOM = 1.25
SYSTEM_RESERVE_CORES = 0.1
# Below this budget idle priority alone is not trusted, and a quota is set.
QUOTA_BELOW_CORES = 1.0
MIN_BATCH_CORES = 0.1
# Katalyst's memory estimate: (rss + cache + shmem) x 1.1.
MEMORY_WORKING_SET_HEADROOM = 1.1
SYSTEM_RESERVE_BYTES = 64 << 20


class Enforcement(NamedTuple):
    """What the stand-in wrote and why, for the benchmark's JSON."""

    writes: dict[str, int]
    reason: str


def apply_expected_colocd_enforcement(
    tree: BenchTree,
    online_pod: CgroupDir,
    online_demand_cores: float,
    capacity_cores: float,
    node_memory_bytes: int,
) -> Enforcement:
    """Write, once, what colocd is expected to write for the batch tier: CPU, then memory."""
    cpu = _cpu(tree, online_demand_cores, capacity_cores)
    memory = _memory(tree, online_pod, node_memory_bytes)
    return Enforcement({**cpu.writes, **memory.writes}, f"{cpu.reason}; {memory.reason}")


def _cpu(tree: BenchTree, online_demand_cores: float, capacity_cores: float) -> Enforcement:
    """Idle priority for batch; a quota only when online's demand leaves too little."""
    besteffort = tree.qos(QOSClass.BEST_EFFORT)
    besteffort.write("cpu.idle", 1)
    budget = capacity_cores - online_demand_cores * CPU_DEMAND_HEADROOM - SYSTEM_RESERVE_CORES
    why = f"online uses {online_demand_cores:.2f} cores, batch budget {budget:.2f}"
    if budget >= QUOTA_BELOW_CORES:
        return Enforcement(
            {"besteffort/cpu.idle": 1}, f"{why} >= {QUOTA_BELOW_CORES}: cpu.idle, no quota"
        )
    quota = round(max(budget, MIN_BATCH_CORES) * CFS_PERIOD_US)
    besteffort.write("cpu.cfs_period_us", CFS_PERIOD_US)
    besteffort.write("cpu.cfs_quota_us", quota)
    return Enforcement(
        {"besteffort/cpu.idle": 1, "besteffort/cpu.cfs_quota_us": quota},
        f"{why} < {QUOTA_BELOW_CORES}: cpu.idle and a quota",
    )


def online_working_set_bytes(online_pod: CgroupDir) -> int:
    """rss + cache of the pod, from v1 memory.stat (hierarchical; v1 cache includes shmem)."""
    stat = dict(line.split() for line in online_pod.read("memory.stat").splitlines())
    return int(stat["total_rss"]) + int(stat["total_cache"])


def _memory(tree: BenchTree, online_pod: CgroupDir, node_memory_bytes: int) -> Enforcement:
    """Cap the besteffort level at the node minus online's real working set (cache included)."""
    working_set = online_working_set_bytes(online_pod)
    limit = int(node_memory_bytes - working_set * MEMORY_WORKING_SET_HEADROOM)
    limit -= SYSTEM_RESERVE_BYTES
    tree.qos(QOSClass.BEST_EFFORT).write("memory.limit_in_bytes", limit)
    return Enforcement(
        {"besteffort/memory.limit_in_bytes": limit},
        f"online working set {working_set >> 20} MiB (rss+cache):"
        f" besteffort limit {limit >> 20} of {node_memory_bytes >> 20} MiB",
    )
