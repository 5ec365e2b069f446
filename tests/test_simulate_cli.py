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
TRACES = sorted(
    p for p in (ROOT / "examples" / "traces").iterdir() if p.suffix in (".csv", ".jsonl")
)
KEYS = {
    "trace",
    "name",
    "reclaimed_core_hours",
    "reclaimed_gib_hours",
    "offered_idle_fraction",
    "cpu_violations",
    "cpu_violation_seconds",
    "cpu_worst_shortfall_cores",
    "memory_violations",
    "memory_violation_seconds",
    "memory_worst_shortfall_gib",
    "oracle_share_cpu",
    "oracle_share_memory",
    "pareto_front",
}


def simulate(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["simulate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


SYNTHETIC = ["bursty.csv", "diurnal.csv", "noisy.jsonl", "step.csv"]
REAL = [
    "alibaba2018_m_1934.csv",
    "alibaba2018_m_1940.csv",
    "alibaba2018_m_1942.csv",
    "alibaba2018_m_1945.csv",
    "bitbrains_rnd_vm185.csv",
    "bitbrains_rnd_vm28.csv",
    "bitbrains_rnd_vm392.csv",
    "bitbrains_rnd_vm420.csv",
]
POLICIES = ["colocd", "koordinator", "volcano", "crane", "katalyst", "oracle"]


def test_the_synthetic_and_real_traces_are_shipped_with_their_provenance():
    assert sorted(p.name for p in TRACES if p.suffix in (".csv", ".jsonl")) == sorted(
        SYNTHETIC + REAL
    )
    readme = (ROOT / "examples" / "traces" / "README.md").read_text()
    for name in REAL:
        assert name in readme
    assert "git blob" in readme and "Licence" in readme


def test_json_has_one_object_per_trace_and_policy(capsys):
    trace = str(ROOT / "examples/traces/bitbrains_rnd_vm420.csv")
    rc, out, err = simulate(capsys, "--trace", trace, "--trace", trace, "-o", "json")
    assert rc == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == POLICIES * 2
    for r in rows:
        assert set(r) >= KEYS
        assert 0 <= r["offered_idle_fraction"] <= 1
    oracle = rows[5]
    assert oracle["cpu_violation_seconds"] == 0 and oracle["memory_violation_seconds"] == 0
    assert oracle["oracle_share_cpu"] == 1 and not oracle["pareto_front"]
    assert set(rows[0]["bar"]) == {"cpu", "memory"}


def test_table_lists_every_policy_with_the_front_and_colocds_bar(capsys):
    rc, out, _ = simulate(capsys, "--trace", str(ROOT / "examples/traces/step.csv"))
    lines = out.splitlines()
    assert rc == 0
    assert lines[0].split() == [
        "TRACE",
        "POLICY",
        "CORE-H",
        "GIB-H",
        "CPU-V",
        "MEM-V",
        "ORACLE%",
        "FRONT",
    ]
    assert [line.split()[1] for line in lines[1:7]] == POLICIES
    assert lines[6].split()[-1] == "100/100"  # the oracle: on no front
    assert lines[-1].startswith("step.csv: colocd's bar ")


def test_a_directory_stands_for_its_traces_and_the_plot_is_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    d = tmp_path / "traces"
    d.mkdir()
    (d / "a.csv").write_bytes((ROOT / "examples/traces/bitbrains_rnd_vm28.csv").read_bytes())
    png = tmp_path / "offers.png"
    rc, out, _ = simulate(capsys, "--trace", str(d), "--plot", str(png))
    assert rc == 0 and "a.csv" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_empty_directory_is_one_line(capsys, tmp_path):
    rc, _, err = simulate(capsys, "--trace", str(tmp_path))
    assert rc == 1 and "no *.csv or *.jsonl traces" in err and err.count("\n") == 1


def test_policy_overrides_change_colocd_only(capsys, tmp_path):
    trace = str(ROOT / "examples/traces/bitbrains_rnd_vm420.csv")
    _, base, _ = simulate(capsys, "--trace", trace, "-o", "json")
    policy = tmp_path / "p.yaml"
    policy.write_text("predictor:\n  burst_factor: 1.0\n  cold_start_seconds: 0\n")
    _, tuned, _ = simulate(capsys, "--trace", trace, "--policy", str(policy), "-o", "json")
    base_rows = [json.loads(x) for x in base.splitlines()]
    tuned_rows = [json.loads(x) for x in tuned.splitlines()]
    assert tuned_rows[0]["reclaimed_core_hours"] > base_rows[0]["reclaimed_core_hours"]
    for b, t in zip(base_rows[1:], tuned_rows[1:], strict=True):
        assert {k: v for k, v in t.items() if k != "pareto_front"} == {
            k: v for k, v in b.items() if k != "pareto_front"
        }


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


def test_the_generator_reproduces_the_shipped_synthetic_traces(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_traces.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for shipped in (p for p in TRACES if p.name in SYNTHETIC):
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_help_documents_the_trace_columns(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for column in ("batch_cpu_demand_milli", "online_memory_bytes", "online_cpu_psi"):
        assert column in out
    assert "QosSettings" in out and "ColocationPolicy" in out


def test_tick_decides_at_every_tick_and_says_how_many_on_stderr(capsys, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "t,cpu_capacity_milli,online_cpu_milli,batch_cpu_demand_milli\n"
        "0,4000,1000,4000\n60,4000,3000,4000\n120,4000,1000,4000\n"
    )
    rc, out, err = simulate(capsys, "--trace", str(path), "--tick", "1", "-o", "json")
    assert rc == 0 and err == "simulate: t.csv: 180 decisions each\n"
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == POLICIES
    assert all(r["duration_seconds"] == 180 for r in rows)


@pytest.mark.parametrize("tick", ["0", "-1", "nan", "inf", "soon", "3601"])
def test_a_bad_tick_is_refused_with_one_line(capsys, tick):
    with pytest.raises(SystemExit) as exc:
        simulate(capsys, "--trace", str(TRACES[0]), "--tick", tick)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --tick: " in err and "seconds" in err


VM420 = str(ROOT / "examples/traces/bitbrains_rnd_vm420.csv")


def _policy(name: str, scope: str, spec: str) -> str:
    return (
        f"apiVersion: colocd.io/v1alpha1\nkind: ColocationPolicy\nmetadata:\n  name: {name}\n"
        f"spec:\n  scope: {scope}\n{spec}"
    )


def _rows(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines()]


@pytest.fixture(scope="module")
def base_rows() -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--trace", VM420, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return _rows(done.stdout)


def _same_peers(a: list[dict], b: list[dict]) -> bool:
    def drop(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "pareto_front"}

    return [drop(r) for r in a[1:]] == [drop(r) for r in b[1:]]


def test_colocation_policies_are_layered_for_the_node_described(capsys, tmp_path, base_rows):
    (tmp_path / "cluster.yaml").write_text(
        _policy("tight", "Cluster", "  reclaim:\n    maxPercent: {cpu: 50, memory: 50}\n")
    )
    (tmp_path / "pool.yaml").write_text(
        _policy(
            "tighter",
            "NodePool",
            "  nodeSelector: {matchLabels: {pool: small}}\n  priority: 10\n"
            "  reclaim:\n    maxPercent: {cpu: 30}\n",
        )
    )
    rc, out, err = simulate(capsys, "--trace", VM420, "--policy", str(tmp_path), "-o", "json")
    cluster = _rows(out)
    assert rc == 0 and "weakest first: Cluster tight\n" in err
    assert cluster[0]["reclaimed_core_hours"] < base_rows[0]["reclaimed_core_hours"]
    assert cluster[0]["reclaimed_gib_hours"] < base_rows[0]["reclaimed_gib_hours"]
    assert _same_peers(cluster, base_rows)
    rc, out, err = simulate(
        capsys, "--trace", VM420, "--policy", str(tmp_path), "--labels", "pool=small", "-o", "json"
    )
    pool = _rows(out)
    assert (
        rc == 0
        and "(labels: pool=small), weakest first: Cluster tight, NodePool tighter (priority 10)"
        in err
    )
    assert pool[0]["reclaimed_core_hours"] < cluster[0]["reclaimed_core_hours"]
    assert pool[0]["reclaimed_gib_hours"] == cluster[0]["reclaimed_gib_hours"]


def test_a_node_policy_applies_only_to_the_node_it_names(capsys, tmp_path, base_rows):
    path = tmp_path / "node.yaml"
    path.write_text(
        _policy("one", "Node", "  nodeNames: [node-7]\n  reclaim:\n    maxPercent: {cpu: 30}\n")
    )
    rc, out, err = simulate(capsys, "--trace", VM420, "--policy", str(path), "-o", "json")
    assert rc == 0 and _rows(out) == base_rows
    assert "warning: no ColocationPolicy applies to an unnamed node (labels: none)" in err
    rc, out, err = simulate(
        capsys, "--trace", VM420, "--policy", str(path), "--node", "node-7", "-o", "json"
    )
    node = _rows(out)
    assert rc == 0 and "policies for node node-7 (labels: none), weakest first: Node one" in err
    assert node[0]["reclaimed_core_hours"] < base_rows[0]["reclaimed_core_hours"]
    assert _same_peers(node, base_rows)


@pytest.mark.parametrize(
    ("policies", "args", "message"),
    [
        (
            [_policy("bad", "Cluster", "  reclaim:\n    maxPercent: {cpu: 150}\n")],
            [],
            "spec.reclaim.maxPercent.cpu",
        ),
        (
            [
                _policy("a", "Cluster", "  margin:\n    boundsPercent: {min: 0, max: 10}\n"),
                _policy("b", "Node", "  nodeNames: [n1]\n  margin:\n    initialPercent: 20\n"),
            ],
            ["--node", "n1"],
            "resolve policy for node n1 (labels: none): margin.initialPercent 20 is outside",
        ),
    ],
)
def test_an_invalid_policy_is_named_and_nothing_is_replayed(
    capsys, tmp_path, policies, args, message
):
    for i, text in enumerate(policies):
        (tmp_path / f"p{i}.yaml").write_text(text)
    rc, out, err = simulate(capsys, "--trace", VM420, "--policy", str(tmp_path), *args)
    assert rc == 1 and out == "" and message in err
    assert all(line.startswith("colocd: error: ") for line in err.splitlines())


def test_a_directory_without_policies_is_one_line(capsys, tmp_path):
    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    rc, out, err = simulate(capsys, "--trace", VM420, "--policy", str(tmp_path))
    assert rc == 1 and out == ""
    assert err.splitlines()[-1] == (
        f"colocd: error: load policy {tmp_path}: no ColocationPolicy documents in this directory"
    )


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ([], ["--node", "n1"], "--node and --labels choose among the policies of --policy"),
        (["margin: {target: 30}\n"], ["--labels", "a=b"], "this file holds settings overrides"),
        (
            ["margin: {target: 30}\n", "margin: {target: 20}\n"],
            [],
            "settings overrides come in one file",
        ),
    ],
)
def test_node_flags_need_policies_and_overrides_come_alone(capsys, tmp_path, files, args, message):
    for i, text in enumerate(files):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(text)
        args = [*args, "--policy", str(path)]
    rc, out, err = simulate(capsys, "--trace", VM420, *args)
    assert rc == 1 and out == "" and err.count("\n") == 1 and message in err
