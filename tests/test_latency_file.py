"""The latency file the margin's `latency` indicator reads, and the setting that names it."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from agent.config import Settings
from agent.observe.latency import LatencyFile
from qos.decide import BrainState, decide
from tests.qos_builders import snapshot


def test_the_reading_is_the_number_as_old_as_the_file(tmp_path):
    path = tmp_path / "p99"
    path.write_text("12.5\n")
    os.utime(path, (1000.0, 1000.0))
    read = LatencyFile(path).read(at=500.0, wall=1030.0)
    assert read.note is None
    assert read.reading is not None
    assert read.reading.value == 12.5 and read.reading.at == 470.0


@pytest.mark.parametrize(
    ("text", "why"),
    [(None, "No such file"), ("fast\n", "'fast' is not a number"), ("-1", "is not finite")],
)
def test_a_bad_file_is_a_missing_reading_with_a_note(tmp_path, text, why):
    path = tmp_path / "p99"
    if text is not None:
        path.write_text(text)
    read = LatencyFile(path).read(at=1.0, wall=1.0)
    assert read.reading is None
    assert read.note is not None and read.note.startswith(f"latency file {path}: ")
    assert why in read.note


def test_the_latency_indicator_needs_a_file_to_read(tmp_path):
    qos = {"margin": {"indicator": "latency", "target": 20}}
    with pytest.raises(ValidationError, match=r"needs agent\.latency_file"):
        Settings.model_validate({"qos": qos})
    s = Settings.model_validate({"qos": qos, "agent": {"latency_file": str(tmp_path / "p99")}})
    assert s.agent.latency_file == tmp_path / "p99"


def test_the_file_drives_the_margin_above_and_below_its_target(tmp_path):
    settings = Settings.model_validate(
        {
            "qos": {"margin": {"indicator": "latency", "target": 20, "initial_fraction": 0.2}},
            "agent": {"latency_file": str(tmp_path / "p99")},
        }
    ).qos
    path = tmp_path / "p99"
    margins = []
    state = BrainState()
    for t, value in enumerate(["80", "80", "5", "5"], start=1):
        path.write_text(value)
        os.utime(path, (float(t), float(t)))
        read = LatencyFile(path).read(at=float(t), wall=float(t))
        snap = snapshot(float(t))._replace(latency=read.reading)
        plan, state = decide(snap, state, settings, float(t))
        margins.append(plan.margin.fraction)
        assert "online latency" in plan.margin.reason
    assert margins[0] > 0.2 and margins[1] >= margins[0]
    assert margins[3] < margins[1]
