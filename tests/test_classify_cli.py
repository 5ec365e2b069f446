"""`colocd classify` end to end: files, directories, stdin, lists, bad documents."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, *argv, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_examples_cover_the_required_kinds_of_pod(capsys):
    code, out, err = run(capsys, "classify", "-o", "json", str(EXAMPLES))
    assert code == 0, err
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    for row in rows.values():
        assert set(row) >= {"namespace", "name", "uid", "qosClass", "tier", "reason"}
    assert rows["web-frontend-7c9d8f6b5-x2k4q"]["tier"] == "online"
    assert rows["nightly-report-28374650-9wq7z"]["qosClass"] == "BestEffort"
    assert rows["node-exporter-r8t2v"]["tier"] == "system"
    assert rows["checkout-6b7c8d9e0f-qrstu"]["qosClass"] == "Guaranteed"
    assert rows["spark-etl-exec-3"]["tier"] == "batch"
    assert "colocd.io/batch-cpu" in rows["spark-etl-exec-3"]["reason"]
    assert rows["payments-5d6f7b8c9-abcde"]["tier"] == "dedicated"


def test_table_is_aligned_with_a_header(capsys):
    code, out, _ = run(capsys, "classify", str(EXAMPLES / "pods" / "web-frontend.yaml"))
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "QOS", "TIER", "REASON"]
    assert row.index("web-frontend") == header.index("NAME ")
    assert row.index("Burstable") == header.index("QOS")


def test_yaml_output(capsys):
    import yaml

    code, out, _ = run(capsys, "classify", "-o", "yaml", str(EXAMPLES / "pods"))
    assert code == 0
    assert {r["tier"] for r in yaml.safe_load(out)} >= {"online", "batch", "system"}


MIXED = """\
apiVersion: v1
kind: Pod
metadata: {name: good, namespace: a}
spec: {containers: [{name: c}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
kind: Pod
metadata: {name: bad-quantity}
spec: {containers: [{name: c, resources: {requests: {cpu: lots}}}]}
---
kind: Pod
metadata: {name: gold, annotations: {colocd.io/tier: gold}}
spec: {containers: [{name: c}]}
---
kind: Pod
metadata: {name: broken
---
kind: PodList
items:
  - metadata: {name: from-list}
    spec: {containers: [{name: c, resources: {limits: {cpu: "1", memory: 1Gi}}}]}
  - {kind: Service, metadata: {name: svc}}
"""


def test_bad_documents_are_reported_and_the_rest_classified(capsys, monkeypatch):
    code, out, err = run(
        capsys, "classify", "-o", "json", "-", stdin=MIXED, monkeypatch=monkeypatch
    )
    assert code == 1
    names = [json.loads(line)["name"] for line in out.splitlines()]
    assert names == ["good", "from-list"]
    errors = [line for line in err.splitlines() if "error" in line]
    assert any("<stdin>[doc 3]" in e and "invalid quantity 'lots'" in e for e in errors)
    assert any("<stdin>[doc 4]" in e and "'gold' is not one of" in e for e in errors)
    assert any("<stdin>[doc 5]" in e and "not YAML or JSON" in e for e in errors)
    assert any("skipped Deployment/web" in line for line in err.splitlines())
    assert any("items[1]: skipped Service" in line for line in err.splitlines())
    assert all(len(e.splitlines()) == 1 for e in errors)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "Pod", "metadata": {"name": "x"}, "spec": {}}, "spec.containers: Field required"),
        (
            {
                "kind": "Pod",
                "metadata": {"name": "../etc"},
                "spec": {"containers": [{"name": "c"}]},
            },
            "is not a DNS-1123 subdomain",
        ),
        (
            {
                "kind": "Pod",
                "metadata": {"name": "x"},
                "spec": {
                    "containers": [{"name": "c", "resources": {"limits": {"memory": "-1Gi"}}}]
                },
            },
            "negative quantity",
        ),
        (
            {"kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "nope"}},
            "spec.containers",
        ),
        ([1, 2], "items[0]: skipped an object with no kind"),
        ("just a string", "expected an object, got str"),
    ],
)
def test_malformed_pods_get_one_line_errors(tmp_path, capsys, body, message):
    f = tmp_path / "pod.json"
    f.write_text(json.dumps(body))
    code, out, err = run(capsys, "classify", str(f))
    assert code == (0 if "skipped" in message else 1)
    assert message in err
    assert "web" not in out


def test_missing_path_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "classify", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "no such file or directory" in err


def test_help_explains_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "colocation" in out
    from agent.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert len(text.splitlines()) > 5, name
        assert p.description, f"{name} has no description"
