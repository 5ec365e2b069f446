"""The predictor's history and the CPU margin across restarts: saved in Unix time, read back
onto the new monotonic clock, and set aside with one line when they cannot be trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.history import FILENAME, MAX_AGE_S, Clocks, History, load_history, save_history
from qos.decide import BrainState
from qos.demand import PredictorState
from qos.gpu import Frozen, GpuBrain, Surge
from qos.margin import MarginState, PidState, update_margin
from qos.predictor import Series, Window, predict
from qos.settings import Indicator, MarginSettings, PredictorSettings

MEMORY = PredictorSettings().for_memory()
SAVED = Clocks(monotonic=1_000.0, wall=1_700_000_000.0)
# The host rebooted: the monotonic clock starts again; 30 s of wall time went by.
LATER = Clocks(monotonic=50.0, wall=SAVED.wall + 30.0)


def _memory(values: list[float]) -> Series:
    series = Series()
    for i, v in enumerate(values):
        series = series.observe(SAVED.monotonic - 600.0 + 60.0 * i, v, MEMORY)
    return series


PSI = MarginSettings()
# Under interference: the margin had grown to 30 % of the node, its integral to 28 %.
MARGIN = MarginState(0.30, PidState(integral=0.28, last_input=1.6), at=995.0)


def _saved(tmp_path: Path, state: PredictorState | None = None) -> PredictorState:
    state = state or PredictorState(memory_online=_memory([5.0, 9.0, 4.0]), regime_at=940.0)
    save_history(tmp_path, "node-a", BrainState(state, MARGIN), Indicator.CPU_PSI, SAVED)
    return state


def _load(tmp_path: Path, margin: MarginSettings = PSI) -> tuple[History, str]:
    return load_history(tmp_path, "node-a", LATER, margin)


def test_the_series_come_back_on_the_new_clock_and_predict_the_same(tmp_path: Path) -> None:
    before = _saved(tmp_path)
    history, why = _load(tmp_path)
    after = history.predictor
    assert why == ""
    shift = LATER.monotonic - SAVED.monotonic - 30.0
    m0, m1 = before.memory_online, after.memory_online
    assert m1.window.values == m0.window.values and m1.window.ordered == m0.window.ordered
    assert m1.window.times == pytest.approx([t + shift for t in m0.window.times])
    assert (m1.burst, m1.step, m1.last) == (m0.burst, m0.step, m0.last)
    assert m1.first_at == pytest.approx(m0.first_at + shift)
    # The readings' gap, which sizes memory's cold start, is the same 60 s after it.
    assert m1.changes == m0.changes == 2 and m1.gap == pytest.approx(m0.gap) == 60.0
    assert after.regime_at == pytest.approx(940.0 + shift)
    # 30 s later by the wall, the same demand: the 9 peak held, nothing learned forgotten.
    old = predict(m0, 4.0, SAVED.monotonic + 30.0, 1.0, MEMORY)
    new = predict(m1, 4.0, LATER.monotonic, 1.0, MEMORY)
    assert new.value == pytest.approx(old.value) and new.level == 9.0


def test_the_margin_comes_back_and_keeps_protecting_online(tmp_path: Path) -> None:
    _saved(tmp_path)
    history, why = _load(tmp_path)
    margin = history.margin
    shift = LATER.monotonic - SAVED.monotonic - 30.0
    assert why == "" and margin is not None
    assert (margin.fraction, margin.pid) == (MARGIN.fraction, MARGIN.pid)
    assert margin.at == pytest.approx(995.0 + shift)
    assert _load(tmp_path)[0].describe() == (
        "saved 30s ago: online samples CPU 0, memory 3; margin 30.0%"
    )
    # Interference goes on after the restart: the margin holds instead of starting at 0.
    state, decision = update_margin(margin, 32.0, LATER.monotonic + 1.0, PSI)
    assert decision.fraction >= 0.30 and state.fraction >= 0.30


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (MarginSettings(indicator=Indicator.THROTTLING), None),  # another indicator's integral
        (MarginSettings(max_fraction=0.2), (0.2, 0.2)),  # the bounds were lowered meanwhile
    ],
)
def test_the_margin_comes_back_only_for_its_indicator_and_within_todays_bounds(
    tmp_path: Path, settings: MarginSettings, expected: tuple[float, float] | None
) -> None:
    before = _saved(tmp_path)
    history, why = _load(tmp_path, settings)
    predictor, margin = history.predictor, history.margin
    assert why == "" and predictor.memory_online.window.values == before.memory_online.window.values
    got = None if margin is None else (margin.fraction, margin.pid.integral)
    assert got == expected


def test_an_older_file_without_the_margin_restores_the_series_alone(tmp_path: Path) -> None:
    before = _saved(tmp_path)
    path = tmp_path / FILENAME
    data = json.loads(path.read_text())
    del data["margin"]
    path.write_text(json.dumps(data))
    history, why = _load(tmp_path)
    predictor, margin = history.predictor, history.margin
    assert why == "" and margin is None
    assert predictor.memory_online.window.values == before.memory_online.window.values


def test_the_gpus_known_by_uuid_come_back_and_those_by_index_do_not(tmp_path: Path) -> None:
    sm = _memory([40.0, 90.0, 30.0])  # any series: the GPU's online SM use
    memory = Window().add(970.0, 8e9, 3600.0, 3600).add(990.0, 2e9, 3600.0, 3600)
    gpus = GpuBrain(
        online={"GPU-aa": sm, "index-1": sm},
        memory={"GPU-aa": memory, "index-1": memory},
    )
    brain = BrainState(PredictorState(), gpus=gpus)
    save_history(tmp_path, "node-a", brain, Indicator.CPU_PSI, SAVED)
    history, why = _load(tmp_path)
    shift = LATER.monotonic - SAVED.monotonic - 30.0
    assert why == "" and set(history.gpus.online) == set(history.gpus.memory) == {"GPU-aa"}
    back = history.gpus.memory["GPU-aa"]
    assert back.values == (8e9, 2e9) and back.peak == 8e9
    assert back.times == pytest.approx([970.0 + shift, 990.0 + shift])
    assert history.gpus.online["GPU-aa"].window.values == sm.window.values
    assert history.describe().endswith("; 1 GPUs")


def test_a_surge_and_the_pods_frozen_on_it_come_back_with_their_clocks(tmp_path: Path) -> None:
    """The surge keeps its calm-since (the thaw hysteresis) and each pod its freeze time (the
    maxFrozen clock); a pod frozen only on a GPU known by index is left to the journal."""
    gpus = GpuBrain(
        surges={"GPU-aa": Surge(900.0, "SM 95% >= 80%", 980.0), "index-1": Surge(950.0, "x")},
        frozen={
            "jobs/train": Frozen("uid-1", 910.0, frozenset({"GPU-aa", "index-1"}), "SM 95%"),
            "jobs/infer": Frozen("uid-2", 950.0, frozenset({"index-1"}), "x"),
        },
    )
    save_history(
        tmp_path, "node-a", BrainState(PredictorState(), gpus=gpus), Indicator.CPU_PSI, SAVED
    )
    history, why = _load(tmp_path)
    shift = LATER.monotonic - SAVED.monotonic - 30.0
    assert why == "" and set(history.gpus.surges) == {"GPU-aa"}
    surge = history.gpus.surges["GPU-aa"]
    assert (surge.since, surge.calm_since) == pytest.approx((900.0 + shift, 980.0 + shift))
    assert surge.why == "SM 95% >= 80%"
    (pod,) = history.gpus.frozen.items()
    assert pod[0] == "jobs/train" and pod[1].uid == "uid-1" and pod[1].why == "SM 95%"
    assert pod[1].since == pytest.approx(910.0 + shift)
    assert pod[1].devices == frozenset({"GPU-aa"})
    assert history.describe().endswith("margin initial; batch pods frozen: jobs/train")


def test_no_file_is_a_new_node_without_a_warning(tmp_path: Path) -> None:
    assert _load(tmp_path) == (History(PredictorState()), "")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.update(node="node-b"), "saved by node 'node-b', this is 'node-a'"),
        (lambda d: d.update(saved_at=LATER.wall - MAX_AGE_S - 1), "saved 601s ago"),
        (lambda d: d.update(saved_at=LATER.wall + 5), "saved -5s ago"),
        (lambda d: d.update(format=2), "not a colocd history file (format"),
        (lambda d: d["memory_online"].update(values=[1.0]), "differ in length"),
        (lambda d: d["memory_online"].update(times=[3.0, 2.0, 1.0]), "not increasing"),
        (lambda d: d["memory_online"].update(values=[1.0, -2.0, 1.0]), "memory_online.values"),
        (lambda d: d["cpu_online"].update(burst="NaN"), "cpu_online.burst"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["margin"].update(fraction=1.5), "margin.fraction"),
        (lambda d: d["margin"].update(indicator="load"), "margin.indicator"),
    ],
)
def test_a_file_that_cannot_be_trusted_is_set_aside_in_one_line(tmp_path, edit, words) -> None:
    _saved(tmp_path)
    path = tmp_path / FILENAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    state, why = _load(tmp_path)
    assert state == History(PredictorState())
    assert words in why and why.endswith("starting afresh") and "\n" not in why


@pytest.mark.parametrize("text", ["{not json", "[]", "", "x" * 10])
def test_a_garbled_file_is_set_aside(tmp_path: Path, text: str) -> None:
    (tmp_path / FILENAME).write_text(text)
    state, why = _load(tmp_path)
    assert state == History(PredictorState())
    assert why.startswith(f"history {tmp_path / FILENAME} not read")


def test_a_state_dir_that_cannot_be_written_raises_and_leaves_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError):
        save_history(blocked / "state", "node-a", BrainState(), Indicator.CPU_PSI, SAVED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
