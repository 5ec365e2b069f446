"""The CPU safety margin, sized by a PID controller (`simple-pid`) from an interference
indicator measured on the online tiers.

The controller runs on the indicator relative to its target (value / target; setpoint 1),
so its gains are unit-free whether the indicator is PSI percent, a throttled ratio or a
latency. It is reverse-acting (the gains are handed to simple-pid negated): interference
above target raises the margin. Its output is the margin as a fraction of node CPU, bounded
to [min_fraction, max_fraction]; simple-pid clamps its integral to the same bounds, which is
the anti-windup. The applied margin then follows two rules of its own: above target it grows
to the controller's output at once (at most `max_step_up_fraction` per decision) and never
shrinks; below target it shrinks towards the output no faster than `shrink_per_second`.

No clocks: the controller is rebuilt each decision from a frozen `PidState`, given the
reading's timestamp as its time and the elapsed time as `dt`, and its state is captured
again afterwards. `simple-pid` keeps that state in attributes without a public setter, so
`_restore`/`_capture` name them in one place (pinned to simple-pid 2.x in pyproject).
"""

from __future__ import annotations

from dataclasses import dataclass

from simple_pid import PID

from qos.settings import Indicator, MarginSettings
from qos.units import format_fraction


@dataclass(frozen=True, slots=True)
class PidState:
    """simple-pid's memory between two calls."""

    integral: float
    last_input: float | None = None
    last_output: float | None = None
    last_error: float | None = None
    last_time: float | None = None


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


def _controller(settings: MarginSettings, state: PidState, at: float) -> PID:
    pid = PID(
        Kp=-settings.kp,
        Ki=-settings.ki,
        Kd=-settings.kd,
        setpoint=1.0,
        sample_time=None,
        output_limits=(settings.min_fraction, settings.max_fraction),
        starting_output=state.integral,
        time_fn=lambda: at,
    )
    _restore(pid, state)
    return pid


def _restore(pid: PID, state: PidState) -> None:
    pid._last_input = state.last_input
    pid._last_output = state.last_output
    pid._last_error = state.last_error
    pid._last_time = state.last_time


def _capture(pid: PID) -> PidState:
    return PidState(
        integral=float(pid._integral),
        last_input=pid._last_input,
        last_output=pid._last_output,
        last_error=pid._last_error,
        last_time=pid._last_time,
    )


def step_pid(
    settings: MarginSettings, state: PidState, ratio: float, at: float, dt: float
) -> tuple[float, PidState]:
    """One honest simple-pid update on `ratio` (indicator / target) with time step `dt`."""
    pid = _controller(settings, state, at)
    output = pid(ratio, dt=dt)
    return float(output), _capture(pid)


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
    output, pid = step_pid(settings, state.pid, ratio, at, dt)
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
