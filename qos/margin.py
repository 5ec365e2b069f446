"""The CPU safety margin, sized by a PID controller from an interference indicator measured
on the online tiers.

The controller runs on the indicator relative to its target (value / target; setpoint 1),
so its gains are unit-free whether the indicator is PSI percent, a throttled ratio or a
latency. It is reverse-acting (the gains act negated): interference above target raises
the margin. Its output is the margin as a fraction of node CPU, bounded to [min_fraction,
max_fraction]; the integral is clamped to the same bounds, which is the anti-windup. The
applied margin then follows two rules of its own: above target it grows to the
controller's output at once (at most `max_step_up_fraction` per decision) and never
shrinks; below target it shrinks towards the output no faster than `shrink_per_second`.

The controller is colocd's own, a few lines of arithmetic on a frozen `PidState` (no
clocks: the elapsed time between readings is its `dt`). It computes what simple-pid 2.x does
(proportional on error, integral clamped to the output bounds, derivative on measurement),
and a test checks it against simple-pid step by step; owning it keeps simple-pid's private
attributes out of the brain.
"""

from __future__ import annotations

from dataclasses import dataclass

from qos.settings import Indicator, MarginSettings
from qos.units import format_fraction


@dataclass(frozen=True, slots=True)
class PidState:
    """The controller's memory between two calls."""

    integral: float
    last_input: float | None = None


@dataclass(frozen=True, slots=True)
class MarginState:
    fraction: float  # the applied margin, fraction of node CPU
    pid: PidState
    at: float | None = None  # timestamp of the last indicator reading fed to the controller


@dataclass(frozen=True, slots=True)
class MarginDecision:
    fraction: float
    indicator: float | None
    reason: str


# The first reading has no predecessor to measure a step from: count it as one default tick.
FIRST_STEP_SECONDS = 1.0

INDICATOR_NAMES = {
    Indicator.CPU_PSI: "online CPU PSI some avg10",
    Indicator.THROTTLING: "online CFS throttled ratio",
    Indicator.LATENCY: "online latency",
}


def initial_margin(settings: MarginSettings) -> MarginState:
    return MarginState(settings.initial_fraction, PidState(integral=settings.initial_fraction))


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def step_pid(
    settings: MarginSettings, state: PidState, ratio: float, dt: float
) -> tuple[float, PidState]:
    """One PID update on `ratio` (indicator / target, setpoint 1) with time step `dt`,
    reverse-acting (interference above target raises the output)."""
    low, high = settings.min_fraction, settings.max_fraction
    error = 1.0 - ratio
    # Reverse-acting: the gains act negated, so an error below 0 (above target) raises it.
    proportional = -settings.kp * error
    integral = _clamp(state.integral - settings.ki * error * dt, low, high)
    moved = 0.0 if state.last_input is None else ratio - state.last_input
    derivative = settings.kd * moved / dt if dt > 0 else 0.0
    output = _clamp(proportional + integral + derivative, low, high)
    return output, PidState(integral, ratio)


def _fmt_value(indicator: Indicator, value: float) -> str:
    return f"{value:.1f}%" if indicator is Indicator.CPU_PSI else f"{value:g}"


def update_margin(
    state: MarginState,
    value: float | None,
    at: float | None,
    settings: MarginSettings,
    name: str | None = None,
) -> tuple[MarginState, MarginDecision]:
    """Feed one indicator reading (already cleaned: finite, non-negative or None) taken at
    `at` to the controller; return the new state and the margin to apply, with a reason.
    `name` words the indicator in the reason (default: the setting's own name)."""
    name = name or INDICATOR_NAMES[settings.indicator]
    target = settings.effective_target
    held = format_fraction(state.fraction)
    if value is None or at is None:
        why = f"margin held at {held}: {name} not read"
        return state, MarginDecision(state.fraction, None, why)
    if state.at is not None and at <= state.at:
        why = f"margin held at {held}: no new {name} reading"
        return state, MarginDecision(state.fraction, value, why)
    elapsed = FIRST_STEP_SECONDS if state.at is None else at - state.at
    dt = min(elapsed, settings.max_dt_seconds)
    ratio = value / target
    output, pid = step_pid(settings, state.pid, ratio, dt)
    prev = state.fraction
    versus = f"{name} {_fmt_value(settings.indicator, value)}"
    tgt = _fmt_value(settings.indicator, target)
    if ratio > 1.0:
        fraction = max(prev, min(output, prev + settings.max_step_up_fraction))
        verb = "grew" if fraction > prev else "held"
        why = f"{versus} above target {tgt}: margin {verb} {held} -> {format_fraction(fraction)}"
    elif ratio < 1.0:
        fraction = min(prev, max(output, prev - settings.shrink_per_second * dt))
        verb = "shrank" if fraction < prev else "held"
        why = f"{versus} below target {tgt}: margin {verb} {held} -> {format_fraction(fraction)}"
    else:
        fraction = prev
        why = f"{versus} at target {tgt}: margin held at {held}"
    fraction = min(settings.max_fraction, max(settings.min_fraction, fraction))
    return MarginState(fraction, pid, at), MarginDecision(fraction, value, why)
