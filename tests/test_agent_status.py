"""The status file and `colocd status`: written atomically, printed plainly, stale said so."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import StatusError
from agent.report.status import (
    FILENAME,
    ApplyStatus,
    BudgetStatus,
    ClampStatus,
    FastPathStatus,
    GpuDeviceStatus,
    GpuStatus,
    MarginStatus,
    Status,
    read_status,
    write_status,
)

CPU_WHY = (
    "colocd.io/batch-cpu 1200m = capacity 2000m x 0.9 - system 300m (current) - online 200m "
    "(current) - margin 100m (5.0%; ...)"
)


def status(written_at: float, tick_s: float = 1.0) -> Status:
    return Status(
        node="node-1",
        written_at=written_at,
        tick_s=tick_s,
        ticks=42,
        pods={"system": 0, "dedicated": 0, "online": 3, "batch": 2},
        budgets=[
            BudgetStatus(
                resource="cpu",
                name="colocd.io/batch-cpu",
                amount=1200,
                unit="m",
                degraded=False,
                reason=CPU_WHY,
                predicted_online=200.0,
            ),
            BudgetStatus(
                resource="memory",
                name="colocd.io/batch-memory",
                amount=3 << 30,
                unit="B",
                degraded=True,
                reason="colocd.io/batch-memory 3.00Gi: degraded, memory readings 12s old",
            ),
        ],
        margin=MarginStatus(fraction=0.05, millicores=100, indicator=1.5, reason="PSI below"),
        batch_tier=["batch on 1 of 2 shared CPUs (1): batch-cpu 1200m holds 1 whole CPUs"],
        degraded=["budget: colocd.io/batch-memory 3.00Gi: degraded, memory readings 12s old"],
        apply=ApplyStatus(counts={"applied": 2, "failed": 1}, problems=["failed cpu.max of /x"]),
        fast_path=FastPathStatus(
            mode="interval",
            detail="interval reader every 50 ms",
            clamps=4,
            recent=[
                ClampStatus(
                    at=written_at - 9, trigger="pressure", reaction_s=0.2, cap="batch cpuset 0"
                ),
                ClampStatus(
                    at=written_at - 3, trigger="usage", reaction_s=0.052, cap="batch cpuset 1"
                ),
            ],
        ),
    )


def test_write_then_read_gives_the_same_status_and_leaves_no_temporary(tmp_path: Path) -> None:
    s = status(time.time())
    write_status(tmp_path, s)
    assert read_status(tmp_path) == s
    assert sorted(os.listdir(tmp_path)) == [FILENAME]


def test_the_table_answers_why_batch_cpu_has_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(tmp_path, status(time.time()))
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    cpu_row = next(line for line in out.splitlines() if line.startswith("cpu "))
    assert "1200m" in cpu_row and "ok" in cpu_row and CPU_WHY in cpu_row
    assert "memory" in out and "degraded" in out
    assert "DEGRADED: budget: colocd.io/batch-memory" in out
    assert "online CPU predicted: 200m" in out
    assert "margin: 5.0% = 100m; PSI below" in out
    assert "fast path: interval" in out and "4 clamps" in out and "52 ms (usage)" in out
    assert "failed cpu.max of /x" in out
    assert "pods: system 0, dedicated 0, online 3, batch 2" in out


def test_json_output_is_the_status_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = status(time.time())
    write_status(tmp_path, s)
    assert main(["status", "--state-dir", str(tmp_path), "-o", "json"]) == 0
    assert Status.model_validate(json.loads(capsys.readouterr().out)) == s


def test_a_missing_status_says_the_agent_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("colocd: error: read status ") and "not running" in err
    assert "\n" not in err


def test_a_stale_status_is_printed_with_a_warning_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(tmp_path, status(time.time() - 60, tick_s=1.0))
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    captured = capsys.readouterr()
    assert "1.0 min ago" in captured.out or "60.0s ago" in captured.out
    assert "is 60s old (stale after 5s): the agent is not running or is stuck" in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not JSON"), ('{"node": "x"}', "not a colocd status file (written_at: Field required)")],
)
def test_an_unreadable_status_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / FILENAME).write_text(content)
    with pytest.raises(StatusError, match=re.escape(message)):
        read_status(tmp_path)


def test_a_status_that_cannot_be_written_is_a_status_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StatusError, match="write status"):
        write_status(blocker / "state", status(time.time()))


def test_the_gpu_section_is_printed_per_gpu_and_absent_without_gpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(tmp_path, status(time.time()))
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    assert "gpu: none on this node" in capsys.readouterr().out
    gpu = GpuStatus(
        devices=[
            GpuDeviceStatus(
                index=0,
                uuid="GPU-a",
                online_percent=95.0,
                batch_percent=5.0,
                offered=0,
                surged=True,
                reason="GPU 0 0 = ...; 0 while online surges on it",
            ),
            GpuDeviceStatus(index=1, error="read memory GPU 1: GPU is lost"),
        ],
        processes=["GPU 0: pid 7 of jobs/train/train (batch) compute"],
        mismatches=["GPU 0: pid 7 of jobs/train/train (batch) uses it, but ..."],
        frozen=["freeze jobs/train (batch on the GPU): GPU 0 online SM 95% >= 80%"],
    )
    write_status(tmp_path, status(time.time()).model_copy(update={"gpu": gpu}))
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gpu 0 (GPU-a): online 95%, batch 5%; SURGED, GPU 0 0 = ..." in out
    assert "gpu 1: not read: read memory GPU 1: GPU is lost" in out
    assert "gpu process: GPU 0: pid 7 of jobs/train/train (batch) compute" in out
    assert "GPU MISMATCH: GPU 0: pid 7" in out
    assert "gpu: freeze jobs/train (batch on the GPU): GPU 0 online SM 95% >= 80%" in out
