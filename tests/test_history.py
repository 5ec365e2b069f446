"""The predictor's history across restarts: saved in Unix time, read back onto the new
monotonic clock, and set aside with one line when it cannot be trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.history import FILENAME, MAX_AGE_S, Clocks, load_history, save_history
from qos.demand import PredictorState
from qos.predictor import Series, predict
from qos.settings import PredictorSettings

MEMORY = PredictorSettings().for_memory()
SAVED = Clocks(monotonic=1_000.0, wall=1_700_000_000.0)
# The host rebooted: the monotonic clock starts again; 30 s of wall time went by.
LATER = Clocks(monotonic=50.0, wall=SAVED.wall + 30.0)


def _memory(values: list[float]) -> Series:
    series = Series()
    for i, v in enumerate(values):
        series = series.observe(SAVED.monotonic - 600.0 + 60.0 * i, v, MEMORY)
    return series


def _saved(tmp_path: Path, state: PredictorState | None = None) -> PredictorState:
    state = state or PredictorState(memory_online=_memory([5.0, 9.0, 4.0]), regime_at=940.0)
    save_history(tmp_path, "node-a", state, SAVED)
    return state


def test_the_series_come_back_on_the_new_clock_and_predict_the_same(tmp_path: Path) -> None:
    before = _saved(tmp_path)
    after, why = load_history(tmp_path, "node-a", LATER)
    assert why == ""
    shift = LATER.monotonic - SAVED.monotonic - 30.0
    m0, m1 = before.memory_online, after.memory_online
    assert m1.window.values == m0.window.values and m1.window.ordered == m0.window.ordered
    assert m1.window.times == pytest.approx([t + shift for t in m0.window.times])
    assert (m1.burst, m1.step, m1.last) == (m0.burst, m0.step, m0.last)
    assert m1.first_at == pytest.approx(m0.first_at + shift)
    assert after.regime_at == pytest.approx(940.0 + shift)
    # 30 s later by the wall, the same demand: the 9 peak held, nothing learned forgotten.
    old = predict(m0, 4.0, SAVED.monotonic + 30.0, 1.0, MEMORY)
    new = predict(m1, 4.0, LATER.monotonic, 1.0, MEMORY)
    assert new.value == pytest.approx(old.value) and new.level == 9.0


def test_no_file_is_a_new_node_without_a_warning(tmp_path: Path) -> None:
    assert load_history(tmp_path, "node-a", LATER) == (PredictorState(), "")


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
    ],
)
def test_a_file_that_cannot_be_trusted_is_set_aside_in_one_line(tmp_path, edit, words) -> None:
    _saved(tmp_path)
    path = tmp_path / FILENAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    state, why = load_history(tmp_path, "node-a", LATER)
    assert state == PredictorState()
    assert words in why and why.endswith("starting afresh") and "\n" not in why


@pytest.mark.parametrize("text", ["{not json", "[]", "", "x" * 10])
def test_a_garbled_file_is_set_aside(tmp_path: Path, text: str) -> None:
    (tmp_path / FILENAME).write_text(text)
    state, why = load_history(tmp_path, "node-a", LATER)
    assert state == PredictorState() and why.startswith(f"history {tmp_path / FILENAME} not read")


def test_a_state_dir_that_cannot_be_written_raises_and_leaves_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError):
        save_history(blocked / "state", "node-a", PredictorState(), SAVED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
