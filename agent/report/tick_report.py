"""One tick's report: the log line, and the status file's content (`agent.report.status`).

The status answers "why is batch-cpu this value?": each budget with its one-line formula,
the margin and its indicator, the batch tier's settings, what made the tick degraded, the
apply report and the fast path's last clamps.
"""

from __future__ import annotations

from collections import Counter

from agent.observe.fastpath import FastPath
from agent.report.status import (
    ApplyStatus,
    BudgetStatus,
    ClampStatus,
    FastPathStatus,
    GpuDeviceStatus,
    GpuStatus,
    MarginStatus,
    Status,
)
from agent.tick import Clamp, TickResult
from qos.tiers import Tier
from qos.units import Unit, format_amount

__all__ = ["MAX_LINES", "RECENT_CLAMPS", "fast_path_status", "status_of", "tick_line"]

MAX_LINES = 10  # notes and failed writes kept in the status file
RECENT_CLAMPS = 10  # fast-path clamps kept in the status file
MAX_GPU_LINES = 64  # GPU processes and mismatches kept in the status file


def _tiers(result: TickResult) -> Counter[Tier]:
    return Counter(p.tier for p in result.topology.node.pods)


def tick_line(result: TickResult, tick: int) -> str:
    """One log line: budgets, margin, pods per tier, the apply report, the time it took."""
    plan = result.plan
    counts = _tiers(result)
    b = plan.budgets
    parts = [f"batch cpu {b.cpu.amount}m", f"memory {format_amount(b.memory.amount, Unit.BYTES)}"]
    if b.gpu is not None:
        parts.append(f"gpu {b.gpu.amount}")
    if plan.gpu is not None and plan.gpu.frozen:
        parts.append(f"{len(plan.gpu.frozen)} batch pods frozen off the GPU")
    line = (
        f"tick {tick}: {', '.join(parts)}; margin {plan.margin.millicores}m; "
        f"pods {' '.join(f'{t.value} {counts.get(t, 0)}' for t in Tier)}; "
        f"writes {result.report if result.report is not None else 'dry-run'}; "
        f"{result.seconds * 1000:.1f} ms"
    )
    if result.degraded:
        line += f"; degraded: {' | '.join(d.text for d in result.degraded)}"
    return line


def fast_path_status(fast: FastPath, clamps: list[Clamp], count: int) -> FastPathStatus:
    return FastPathStatus(
        mode=fast.mode,
        detail=fast.detail,
        clamps=count,
        recent=[
            ClampStatus(at=c.wall, trigger=c.trigger, reaction_s=c.reaction_s, cap=c.cap)
            for c in clamps[-RECENT_CLAMPS:]
        ],
    )


def status_of(
    result: TickResult,
    *,
    node: str,
    tick_s: float,
    ticks: int,
    written_at: float,
    fast_path: FastPathStatus,
) -> Status:
    plan = result.plan
    report = result.report
    counts = _tiers(result)
    problems = [
        f"{r.outcome.value} {r.write.knob} of /{r.write.cgroup}: {r.reason}"
        for r in (report.failed if report else ())
    ]
    tier = plan.batch_tier
    return Status(
        node=node,
        written_at=written_at,
        tick_s=tick_s,
        ticks=ticks,
        pods={t.value: counts.get(t, 0) for t in Tier},
        budgets=[
            BudgetStatus(
                resource=b.resource.value,
                name=b.extended_name,
                amount=b.amount,
                unit=b.resource.unit.value,
                degraded=b.degraded,
                reason=b.reason,
                predicted_online=None if b.terms is None else b.terms.online,
            )
            for b in plan.budgets.all()
        ],
        margin=MarginStatus(
            fraction=plan.margin.fraction,
            millicores=plan.margin.millicores,
            indicator=plan.margin.indicator,
            reason=plan.margin.reason,
        ),
        batch_tier=[x.reason for x in (tier.cpu_idle, tier.cpu_cap, tier.memory) if x],
        degraded=[d.text for d in result.degraded],
        notes=result.notes[:MAX_LINES],
        evictions=[e.reason for e in plan.evictions],
        apply=ApplyStatus(counts=report.counts() if report else {}, problems=problems[:MAX_LINES]),
        fast_path=fast_path,
        gpu=gpu_status(result),
    )


def gpu_status(result: TickResult) -> GpuStatus | None:
    """Per GPU: readings, its share of batch-gpu and why; every process with its pod; the
    mapping mismatches; the freezes. None on a node without GPUs."""
    obs, plan = result.gpu, result.plan.gpu
    if obs is None:
        return None
    shares = {d.index: d for d in plan.devices} if plan is not None else {}
    devices = []
    for d in obs.reading.per_device:
        share = shares.get(d.index)
        devices.append(
            GpuDeviceStatus(
                index=d.index,
                uuid=d.uuid,
                online_percent=d.online_percent,
                batch_percent=d.batch_percent,
                online_memory_bytes=d.online_memory_bytes,
                batch_memory_bytes=d.batch_memory_bytes,
                memory_total_bytes=d.memory_total_bytes,
                offered=None if share is None else share.amount,
                surged=False if share is None else share.surged,
                reason="" if share is None else share.reason,
                error=d.error,
            )
        )
    processes = [
        f"GPU {u.gpu}: {u.where()} {u.kind}"
        + ("" if u.memory_bytes is None else f", {format_amount(u.memory_bytes, Unit.BYTES)}")
        for u in obs.users
    ]
    return GpuStatus(
        devices=devices,
        processes=processes[:MAX_GPU_LINES],
        mismatches=[m.line for m in obs.mismatches][:MAX_GPU_LINES],
        frozen=[f.reason for f in plan.frozen] if plan is not None else [],
        thawed=[f.reason for f in plan.thawed] if plan is not None else [],
        notes=list(plan.notes) if plan is not None else [],
    )
