"""`colocd policy resolve|validate|crd` on the shipped examples and on broken files."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from agent.cli import main

from .apiserver import ApiServer, wait_for
from .objects import node, pool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = str(ROOT / "deploy" / "examples")
GPU_NODE = ["--node", "gpu-node-7", "--labels", "nvidia.com/gpu.present=true,zone=a"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_resolve_shows_provenance_of_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "resolve", *GPU_NODE, EXAMPLES)
    assert code == 0 and err == ""
    assert (
        "policies applied, weakest first: Cluster cluster-default, "
        "NodePool gpu-pool (priority 100), Node node-gpu-node-7"
    ) in out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith(("reclaim.", "gpu.", "eviction."))
    }

    def row(field: str) -> str:
        return " ".join(rows[field].split()[1:])

    assert row("reclaim.maxPercent.cpu") == "NodePool gpu-pool (priority 100) 75"
    assert row("reclaim.maxPercent.memory") == "Cluster cluster-default 80"
    assert row("reclaim.maxPercent.gpu") == "Node node-gpu-node-7 60"
    assert row("eviction.dryRun") == "Node node-gpu-node-7 true"
    assert row("reclaim.degradeOver") == "built-in defaults 20s"
    assert '"tier":"dedicated"}  [Cluster cluster-default]' in out


def test_resolve_for_a_plain_node_uses_the_cluster_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "policy", "resolve", "--node", "cpu-node-1", "-o", "json", EXAMPLES)
    doc = json.loads(out)
    assert code == 0
    assert [a["policy"] for a in doc["applied"]] == ["cluster-default"]
    assert doc["effective"]["gpu"]["reservePercent"] == 10
    assert doc["provenance"]["gpu.reservePercent"] == {"layer": "built-in", "policy": "built-in"}
    assert doc["provenance"]["reclaim.maxPercent.cpu"] == {
        "layer": "Cluster",
        "policy": "cluster-default",
    }
    assert doc["effective"]["reclaim"]["maxPercent"]["cpu"] == 85


def test_resolve_yaml_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    _, as_json, _ = run(capsys, "policy", "resolve", *GPU_NODE, "-o", "json", EXAMPLES)
    _, as_yaml, _ = run(capsys, "policy", "resolve", *GPU_NODE, "-o", "yaml", EXAMPLES)
    assert yaml.safe_load(as_yaml) == json.loads(as_json)


def test_resolve_reports_ties_and_inconsistencies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "colocd.io/v1alpha1",
                    "kind": "ColocationPolicy",
                    "metadata": {"name": name},
                    "spec": {
                        "scope": "NodePool",
                        "priority": 5,
                        "nodeSelector": {"matchLabels": {"a": "b"}},
                        "network": {"linkRate": rate},
                    },
                }
                for name, rate in (("one", "100Mbit"), ("two", "10Gbit"))
            ]
        )
    )
    code, out, err = run(
        capsys, "policy", "resolve", "--node", "n", "--labels", "a=b", str(tmp_path)
    )
    assert code == 1
    assert "network.linkRate: NodePool one (priority 5) wins over NodePool two (priority 5)" in out
    assert (
        "error: resolve node n: network: tier rates add up to 800Mbit, above linkRate 100Mbit"
        in err
    )


def test_validate_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "validate", EXAMPLES)
    assert code == 0 and err == ""
    assert out.count("ok: ") == 3


def test_validate_names_file_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: colocd.io/v1alpha1\nkind: ColocationPolicy\nmetadata: {name: fine}\n"
        "spec: {scope: Cluster}\n"
        "---\n"
        "apiVersion: colocd.io/v1alpha1\nkind: ColocationPolicy\nmetadata: {name: broken}\n"
        "spec:\n  scope: Cluster\n  reclaim: {maxPercent: {cpu: 140}, reserved: {memory: 2Gb}}\n"
        "---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n"
    )
    code, out, err = run(capsys, "policy", "validate", str(bad))
    assert code == 1
    assert out == f"ok: {bad}[doc 1]: ColocationPolicy fine (Cluster)\n"
    lines = err.splitlines()
    assert f"colocd: error: validate {bad}[doc 2]: spec.reclaim.maxPercent.cpu: " in lines[1]
    assert f"{bad}[doc 2]: spec.reclaim.reserved.memory: invalid quantity '2Gb'" in lines[2]
    assert lines[0] == f"colocd: warning: {bad}[doc 3]: skipped ConfigMap (not a ColocationPolicy)"


def test_validate_warns_about_equal_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [
        {
            "apiVersion": "colocd.io/v1alpha1",
            "kind": "ColocationPolicy",
            "metadata": {"name": n},
            "spec": {"scope": "Cluster"},
        }
        for n in ("b-default", "a-default")
    ]
    (tmp_path / "two.yaml").write_text(yaml.safe_dump_all(docs))
    code, _, err = run(capsys, "policy", "validate", str(tmp_path))
    assert code == 0
    assert "policies a-default, b-default share rank Cluster" in err and "a-default wins" in err


def test_validate_refuses_duplicate_names_and_empty_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "apiVersion": "colocd.io/v1alpha1",
        "kind": "ColocationPolicy",
        "metadata": {"name": "x"},
        "spec": {"scope": "Cluster"},
    }
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(doc))
    code, _, err = run(capsys, "policy", "validate", str(tmp_path))
    assert code == 1 and "duplicate name 'x'" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "policy", "validate", str(tmp_path / "empty"))
    assert code == 1 and "no ColocationPolicy documents found" in err


def test_crd_command_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "crd")
    assert code == 0
    assert out == (ROOT / "deploy" / "crd.yaml").read_text()


@pytest.mark.parametrize("action", ["resolve", "validate", "crd", "controller"])
def test_every_action_explains_itself(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["policy", action, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: colocd policy {action}")
    assert len(out.splitlines()) > 5


def test_bad_labels_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["policy", "resolve", "--node", "n", "--labels", "novalue", EXAMPLES])
    assert caught.value.code == 2
    assert "label 'novalue' is not KEY=VALUE" in capsys.readouterr().err


def test_controller_command_runs_against_a_kubeconfig_and_stops_on_sigterm(
    api: ApiServer, tmp_path: Path
) -> None:
    api.create(node("n1", {"pool": "gpu"}))
    api.create(pool("gpu", 10, {"pool": "gpu"}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": api.url}}],
                "users": [{"name": "me", "user": {}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "me"}}],
                "current-context": "kmock",
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    colocd = Path(sys.executable).parent / "colocd"
    proc = subprocess.Popen(
        [
            str(colocd),
            "policy",
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--interval",
            "100ms",
            "--metrics-addr",
            f"127.0.0.1:{metrics_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (api.get(pool("gpu", 10, {})) or {}).get("status"), timeout=30)
        assert api.get(pool("gpu", 10, {}))["status"]["matchedNodes"] == 1
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert 'colocd_policy_status_writes_total{result="ok"} 1.0' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
