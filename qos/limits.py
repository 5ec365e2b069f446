"""Limits for pods and the batch tier: memory protection, batch memory and CPU limits.

Online and dedicated pods get memory.min/low from their requests, so reclaim driven by
batch cannot take their working set (measured here: without it, batch evicted online's page
cache and online's p99 rose about 9x). Batch pods get memory.max from their
`colocd.io/batch-memory` request and memory.high below it, so the kernel throttles them by
reclaim before it kills them. The batch tier as a whole gets memory.high at its budget and
memory.max at the line online's real use must not be pushed below, both in whole steps.
"""

from __future__ import annotations

import math

from qos.budget import Budget, Terms, clamp_amount
from qos.plan import BatchPodPlan, MemoryLimits, OnlinePodPlan
from qos.settings import MemoryQosSettings
from qos.state import NodeState
from qos.tiers import Tier
from qos.units import Unit, format_amount

# The batch tier's limits move in whole 2-MiB steps (a huge page, the largest charge the
# kernel makes), rounded down, towards online: a budget that drifts by some KiB a tick, as
# memory use does on a quiet node, then rewrites nothing.
LIMIT_STEP_BYTES = 2 << 20


def _mi(v: float) -> str:
    return format_amount(v, Unit.BYTES)


def _step_down(amount: int) -> int:
    return amount // LIMIT_STEP_BYTES * LIMIT_STEP_BYTES


def online_pods(node: NodeState, settings: MemoryQosSettings) -> tuple[OnlinePodPlan, ...]:
    plans = []
    for p in node.in_tier(Tier.ONLINE, Tier.DEDICATED):
        request = p.requests.memory_bytes or 0
        if request <= 0:
            continue
        low = math.floor(request * settings.online_low_fraction)
        floor = math.floor(request * settings.online_min_fraction)
        why = (
            f"{p.tier} pod requests {_mi(request)}: memory.min {_mi(floor)} "
            f"(x {settings.online_min_fraction:g}), memory.low {_mi(low)} "
            f"(x {settings.online_low_fraction:g})"
        )
        plans.append(OnlinePodPlan(p.pod.key, p.pod.uid, floor, low, why))
    return tuple(plans)


def batch_pods(node: NodeState, settings: MemoryQosSettings) -> tuple[BatchPodPlan, ...]:
    plans = []
    for p in node.in_tier(Tier.BATCH):
        cpu, mem = p.batch.cpu_milli, p.batch.memory_bytes
        if cpu <= 0 and mem <= 0:
            continue
        memory = None
        parts = []
        if cpu > 0:
            parts.append(f"cpu quota {cpu}m from colocd.io/batch-cpu")
        if mem > 0 and settings.enabled:
            high = math.floor(mem * settings.batch_high_fraction)
            memory = MemoryLimits(high, mem, f"memory.high {_mi(high)} below memory.max {_mi(mem)}")
            parts.append(
                f"memory.max {_mi(mem)} from colocd.io/batch-memory, memory.high {_mi(high)} "
                f"(x {settings.batch_high_fraction:g})"
            )
        reason = "; ".join(parts) or "no memory limit (memory QoS off)"
        plans.append(BatchPodPlan(p.pod.key, p.pod.uid, cpu if cpu > 0 else None, memory, reason))
    return tuple(plans)


def batch_tier(budget: Budget, terms: Terms | None) -> MemoryLimits:
    """memory.high at the memory budget; memory.max at capacity - system - online (the hard
    line, without max_fraction or margin), or left alone when the terms are not fresh. Both
    are rounded down to a whole LIMIT_STEP_BYTES.

    A degraded budget (stale or missing readings) leaves both alone: it stops offering new
    memory (the published batch-memory decays to 0), but lowering the limits on no
    evidence would make the kernel reclaim all of batch's page cache (on v1, where the
    limit is memory.max, refuse it with EBUSY every tick) while online's needs are unknown.
    The limits come down only on fresh readings."""
    if budget.degraded:
        return MemoryLimits(
            None,
            None,
            f"memory.high and memory.max left alone: {budget.reason} (stale readings stop "
            "new offers, never squeeze what batch holds)",
        )
    high = _step_down(budget.amount)
    steps = f"rounded down to {_mi(LIMIT_STEP_BYTES)} steps"
    if terms is None:
        return MemoryLimits(
            high,
            None,
            f"memory.high {_mi(high)} = batch-memory, {steps}; memory.max left alone "
            "(no fresh online memory reading)",
        )
    hard = _step_down(clamp_amount(terms.capacity - terms.system - terms.online, budget.capacity))
    top = max(high, hard)
    why = (
        f"memory.high {_mi(high)} = batch-memory; memory.max {_mi(top)} = capacity "
        f"{_mi(terms.capacity)} - system {_mi(terms.system)} - online {_mi(terms.online)}; "
        f"both {steps}"
    )
    return MemoryLimits(high, top, why)
