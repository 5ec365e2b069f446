"""`colocd simulate` on the shipped traces, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import TraceError
from agent.sources.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
TRACES = sorted((ROOT / "examples" / "traces").iterdir())
KEYS = {"name", "reclaimed_core_hours", "offered_idle_fraction", "violation_seconds"}


def simulate(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["simulate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_four_kinds_of_trace_are_shipped():
    assert [p.name for p in TRACES] == ["bursty.csv", "diurnal.csv", "noisy.jsonl", "step.csv"]


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_json_has_one_object_per_policy_and_colocd_stays_near_zero_violations(capsys, trace):
    rc, out, err = simulate(capsys, "--trace", str(trace), "-o", "json")
    assert rc == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == ["colocd", "koordinator", "crane"]
    for r in rows:
        assert set(r) >= KEYS
        assert 0 <= r["offered_idle_fraction"] <= 1
    colocd, koordinator, crane = rows
    # Near zero: under 0.5 % of the trace's time.
    assert colocd["violation_seconds"] <= 0.005 * colocd["duration_seconds"]
    assert colocd["violation_seconds"] <= crane["violation_seconds"]
    assert colocd["reclaimed_core_hours"] > koordinator["reclaimed_core_hours"]
    assert len(colocd["verdicts"]) == 2


def test_table_lists_every_policy_and_a_verdict_per_baseline(capsys):
    rc, out, _ = simulate(capsys, "--trace", str(ROOT / "examples/traces/step.csv"))
    lines = out.splitlines()
    assert rc == 0
    assert lines[0].split()[:3] == ["POLICY", "CORE-H", "GIB-H"]
    assert [line.split()[0] for line in lines[1:4]] == ["colocd", "koordinator", "crane"]
    assert lines[4].startswith("colocd vs koordinator: cpu ")
    assert lines[5].startswith("colocd vs crane: cpu ")


def test_policy_overrides_change_colocd_only(capsys, tmp_path):
    trace = str(ROOT / "examples/traces/diurnal.csv")
    _, base, _ = simulate(capsys, "--trace", trace, "-o", "json")
    policy = tmp_path / "p.yaml"
    policy.write_text("margin:\n  target: 20\n")
    _, tuned, _ = simulate(capsys, "--trace", trace, "--policy", str(policy), "-o", "json")
    base_rows = [json.loads(x) for x in base.splitlines()]
    tuned_rows = [json.loads(x) for x in tuned.splitlines()]
    assert tuned_rows[0]["reclaimed_core_hours"] > base_rows[0]["reclaimed_core_hours"]
    assert tuned_rows[1:] == base_rows[1:]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("margin: {target: -1}\n", "margin.target: Input should be greater than 0"),
        ("bogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("- 1\n", "expected a mapping of settings"),
        ("margin: [\n", "not YAML or JSON"),
    ],
)
def test_a_bad_policy_is_one_line_on_stderr(capsys, tmp_path, policy, message):
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    rc, out, err = simulate(capsys, "--trace", str(TRACES[0]), "--policy", str(path))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and f"load policy {path}: " in err and message in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t,cpu_capacity_milli,online_cpu_milli\n0,1000,10\n", "lacks required columns"),
        (
            "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli,gpu\n0,1,1,1,1\n",
            "unknown column gpu",
        ),
        (
            "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli\n0,1000,x,0\n",
            "line 2: column online_cpu_milli: 'x' is not a number",
        ),
        (
            "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli\n"
            "5,1000,1,0\n5,1000,1,0\n",
            "line 3: t 5 does not increase",
        ),
        (
            "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli\n0,1000,-1,0\n",
            "is not finite and >= 0",
        ),
        (
            "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli\n0,1000,,0\n",
            "first row lacks online_cpu_milli",
        ),
        ('{"t": 0, "cpu_capacity_milli": 1000}\n{"t": 1,\n', "first row lacks"),
        ('{"t": 0}\n[1]\n', "first row lacks"),
        ("", "no rows"),
    ],
)
def test_a_bad_trace_is_one_line_naming_file_and_line(capsys, tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    rc, out, err = simulate(capsys, "--trace", str(path))
    assert rc == 1 and out == ""
    assert err.startswith(f"colocd: error: read trace {path}") and message in err
    assert err.count("\n") == 1


def test_a_missing_trace_file_is_one_line(capsys, tmp_path):
    rc, _, err = simulate(capsys, "--trace", str(tmp_path / "nope.csv"))
    assert rc == 1 and "No such file" in err


def test_empty_cells_and_nulls_are_missing_readings(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(
        "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli,system_cpu_milli\n"
        "0,4000,1000,4000,\n1,4000,,4000,200\n"
    )
    rows = read_trace(str(csv_path))
    assert rows[0].system_cpu_milli is None and rows[1].online_cpu_milli is None
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"t": 0, "cpu_capacity_milli": 4000, "online_cpu_milli": 1, '
        '"batch_cpu_demand_milli": 0}\n\n{"t": 1, "online_cpu_milli": null}\n'
    )
    rows = read_trace(str(jsonl))
    assert len(rows) == 2 and rows[1].online_cpu_milli is None
    assert rows[1].cpu_capacity_milli is None  # the replay carries the last value forward


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"t": 0, "cpu_capacity_milli": 4000, "online_cpu_milli": 1, '
        '"batch_cpu_demand_milli": 0}\n{"t": 1,\n'
    )
    with pytest.raises(TraceError, match="line 2: not JSON"):
        read_trace(str(path))


def test_the_generator_reproduces_the_shipped_traces(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_traces.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for shipped in TRACES:
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_help_documents_the_trace_columns(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for column in ("batch_cpu_demand_milli", "online_memory_bytes", "online_cpu_psi"):
        assert column in out
    assert "QosSettings" in out and "ColocationPolicy" in out
