"""Evicting batch pods: the last resort, one pod at a time.

Two triggers, each of which must be sustained: memory pressure (node memory PSI or working
set above a threshold, ending only below threshold - hysteresis) and CPU starvation (batch's
CPU budget below a fraction of what it wants: its measured demand when read, else what its
pods requested). Missing or stale readings are no
evidence: they never trigger an eviction. A budget that degrades to 0 throttles batch and
never counts as starvation, so an agent that loses its readings cannot start an eviction
storm (Koordinator #2118).
Between two evictions there is a cool-down, and a rate limit caps them per window. The
lowest-priority batch pod goes first; ties go to the larger request of the resource under
pressure, then to the name. A pod once chosen is skipped while it is still on the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qos.budget import Budget
from qos.plan import Eviction
from qos.settings import EvictionSettings
from qos.state import NodeState, PodState
from qos.tiers import Tier
from qos.units import format_fraction


@dataclass(frozen=True, slots=True)
class EvictionState:
    pressured: bool = False
    pressure_since: float | None = None
    starved_since: float | None = None
    last_eviction_at: float | None = None
    recent: tuple[float, ...] = ()  # eviction times inside the rate window
    chosen: tuple[tuple[str, float], ...] = ()  # pod id -> when it was chosen


@dataclass(frozen=True, slots=True)
class MemoryPressure:
    """Fresh, cleaned evidence of memory pressure; None where not read. `at` is the time
    of the newest reading behind it (None: no fresh evidence at all)."""

    psi_some_avg10: float | None
    usage_fraction: float | None
    at: float | None


@dataclass(frozen=True, slots=True)
class EvictionOutcome:
    evictions: tuple[Eviction, ...]
    state: EvictionState
    notes: tuple[str, ...]


def _pod_id(p: PodState) -> str:
    return p.pod.uid or p.pod.key


def _pressured(evidence: MemoryPressure, was: bool, s: EvictionSettings) -> tuple[bool, str]:
    """Above threshold, or (once pressured) still above threshold - hysteresis."""

    def check(
        value: float | None, line: float, gap: float, what: str, fmt: Callable[[float], str]
    ) -> str:
        if value is None:
            return ""
        if value >= line:
            return f"{what} {fmt(value)} >= {fmt(line)}"
        if was and value >= line - gap:
            return f"{what} {fmt(value)} >= {fmt(line - gap)} (hysteresis below {fmt(line)})"
        return ""

    why = check(
        evidence.psi_some_avg10,
        s.memory_psi_threshold,
        s.memory_psi_hysteresis,
        "node memory PSI some",
        lambda v: f"{v:.1f}%",
    ) or check(
        evidence.usage_fraction,
        s.memory_usage_threshold,
        s.memory_usage_hysteresis,
        "node working set",
        format_fraction,
    )
    return bool(why), why


def _since(active: bool, since: float | None, at: float | None) -> float | None:
    """When a condition began, on the readings' clock: durations grow only with new
    readings. Without fresh evidence (`at` None) the clock neither runs nor resets."""
    if at is None:
        return since
    if not active:
        return None
    return at if since is None else since


def _lasted(since: float | None, at: float | None) -> float | None:
    return None if since is None or at is None else at - since


def plan_evictions(
    node: NodeState,
    *,
    evidence: MemoryPressure,
    cpu_budget: Budget,
    cpu_at: float | None,
    batch_demand_milli: float | None,
    now: float,
    state: EvictionState,
    settings: EvictionSettings,
) -> EvictionOutcome:
    batch = node.in_tier(Tier.BATCH)
    present = {_pod_id(p) for p in batch}
    chosen = tuple(
        (pid, at)
        for pid, at in state.chosen
        if pid in present and now - at < settings.rate_window_seconds
    )
    recent = tuple(t for t in state.recent if now - t < settings.rate_window_seconds)
    pressured, pressure_why = _pressured(evidence, state.pressured, settings)
    if evidence.at is None:
        pressured = state.pressured
    wants = "requested"
    requested = float(sum(p.batch.cpu_milli for p in batch))
    if batch and batch_demand_milli is not None:
        wants, requested = "demanded", batch_demand_milli
    # A degraded budget is missing evidence, not starvation.
    budget = cpu_budget.amount
    if cpu_budget.degraded:
        cpu_at = None
    starved = requested > 0 and budget < settings.starvation_fraction * requested
    pressure_since = _since(pressured, state.pressure_since, evidence.at)
    starved_since = _since(starved, state.starved_since, cpu_at)
    pressure_for = _lasted(pressure_since, evidence.at)
    starved_for = _lasted(starved_since, cpu_at)
    new_state = EvictionState(
        pressured, pressure_since, starved_since, state.last_eviction_at, recent, chosen
    )

    trigger = ""
    memory_first = False
    if pressure_for is not None and pressure_for >= settings.sustained_seconds:
        trigger = f"{pressure_why} for {pressure_for:.0f}s"
        memory_first = True
    elif starved_for is not None and starved_for >= settings.starvation_seconds:
        trigger = (
            f"batch starved: batch-cpu {budget}m < "
            f"{settings.starvation_fraction:g} x {requested:.0f}m {wants}, "
            f"for {starved_for:.0f}s"
        )
    if not trigger or not settings.enabled:
        return EvictionOutcome((), new_state, ())
    if (
        state.last_eviction_at is not None
        and now - state.last_eviction_at < settings.cooldown_seconds
    ):
        left = settings.cooldown_seconds - (now - state.last_eviction_at)
        return EvictionOutcome(
            (), new_state, (f"eviction held: {trigger}; cool-down {left:.0f}s left",)
        )
    if len(recent) >= settings.max_evictions:
        note = (
            f"eviction held: {trigger}; rate limit {settings.max_evictions} per "
            f"{settings.rate_window_seconds:g}s reached"
        )
        return EvictionOutcome((), new_state, (note,))
    taken = {pid for pid, _ in chosen}
    candidates = [p for p in batch if _pod_id(p) not in taken]
    if not candidates:
        return EvictionOutcome((), new_state, (f"eviction wanted: {trigger}; no batch pod left",))

    def order(p: PodState) -> tuple[int, int, str]:
        size = p.batch.memory_bytes if memory_first else p.batch.cpu_milli
        return (p.pod.priority or 0, -size, p.pod.key)

    victim = min(candidates, key=order)
    mode = "dry-run: would evict" if settings.dry_run else "evict"
    why = (
        f"{mode} {victim.pod.key} (lowest-priority batch pod, priority "
        f"{victim.pod.priority or 0}): {trigger}"
    )
    eviction = Eviction(
        victim.pod.key, victim.pod.uid, victim.pod.priority or 0, settings.dry_run, why
    )
    new_state = EvictionState(
        pressured,
        pressure_since,
        starved_since,
        now,
        (*recent, now),
        (*chosen, (_pod_id(victim), now)),
    )
    return EvictionOutcome((eviction,), new_state, ())
