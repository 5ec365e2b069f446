"""The PID-sized CPU margin: direction, bounds, slow shrink, and a controller that computes
what simple-pid does (simple-pid is the reference here, a test dependency only)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simple_pid import PID

from qos.margin import MarginState, initial_margin, step_pid, update_margin
from qos.settings import MarginSettings

S = MarginSettings(target=10, min_fraction=0.05, initial_fraction=0.25)  # start 0.25


def run(values, settings=S, state=None, step=1.0):
    state = state or initial_margin(settings)
    out = []
    for i, v in enumerate(values):
        state, decision = update_margin(state, v, (i + 1) * step, settings)
        out.append(decision.fraction)
    return out, state


def test_above_target_the_margin_grows_at_once():
    fractions, _ = run([40.0])
    assert fractions[0] > S.initial_fraction
    assert fractions[0] - S.initial_fraction <= S.max_step_up_fraction + 1e-12


def test_below_target_the_margin_shrinks_no_faster_than_the_rate():
    fractions, _ = run([0.0] * 30)
    steps = [a - b for a, b in zip([S.initial_fraction, *fractions], fractions, strict=False)]
    assert all(0 <= s <= S.shrink_per_second + 1e-12 for s in steps)
    assert fractions[-1] < S.initial_fraction


def test_at_target_the_margin_holds():
    fractions, _ = run([10.0] * 5)
    assert fractions == [S.initial_fraction] * 5


def test_it_never_shrinks_while_above_target():
    fractions, _ = run([40.0] * 5 + [12.0] * 20)
    assert fractions == sorted(fractions)


def test_no_integral_windup_after_a_long_time_at_the_upper_bound():
    _, state = run([100.0] * 2000)
    assert state.fraction == S.max_fraction
    assert state.pid.integral == S.max_fraction  # clamped to the output bound
    # The first reading below target already moves it down.
    state, decision = update_margin(state, 0.0, 2001.0, S)
    assert decision.fraction == pytest.approx(S.max_fraction - S.shrink_per_second)


@given(
    st.lists(
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        min_size=1,
        max_size=80,
    ),
    st.floats(0.1, 30.0),
)
def test_margin_stays_within_its_bounds(values, step):
    fractions, state = run(values, step=step)
    assert all(S.min_fraction <= f <= S.max_fraction for f in fractions)
    assert S.min_fraction <= state.pid.integral <= S.max_fraction


def test_a_missing_reading_or_the_same_reading_again_holds_the_margin():
    state = initial_margin(S)
    held, decision = update_margin(state, None, 1.0, S)
    assert held is state and "not read" in decision.reason
    state, _ = update_margin(state, 50.0, 2.0, S)
    again, decision = update_margin(state, 50.0, 2.0, S)
    assert again is state and "no new" in decision.reason


def test_the_own_controller_computes_what_one_persistent_simple_pid_does():
    """Same outputs and integral as simple-pid, from the frozen state alone."""
    settings = MarginSettings(kd=0.02)
    ratios = [0.2, 3.0, 2.5, 0.1, 0.0, 1.7, 4.0, 0.5]
    pid = PID(
        -settings.kp,
        -settings.ki,
        -settings.kd,
        setpoint=1.0,
        sample_time=None,
        output_limits=(settings.min_fraction, settings.max_fraction),
        starting_output=settings.initial_fraction,
        time_fn=lambda: 0.0,
    )
    state = initial_margin(settings).pid
    for r in ratios:
        expected = pid(r, dt=2.0)
        got, state = step_pid(settings, state, r, dt=2.0)
        assert got == pytest.approx(expected, abs=1e-12)
    assert state.integral == pytest.approx(pid.components[1])


def test_throttling_indicator_uses_its_own_target():
    s = MarginSettings(indicator="cfs_throttled_ratio", initial_fraction=0.25)
    grown, _ = run([0.5], settings=s)
    shrunk, _ = run([0.0], settings=s)
    assert grown[0] > s.initial_fraction > shrunk[0]


def test_state_is_immutable_and_returned_new():
    state = initial_margin(S)
    new, _ = update_margin(state, 30.0, 1.0, S)
    assert isinstance(new, MarginState) and new is not state
    assert state.fraction == S.initial_fraction
