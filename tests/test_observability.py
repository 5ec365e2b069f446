"""deploy/grafana and deploy/prometheus without a server: the dashboard is well formed and
refers only to metrics and labels the agent declares, the rules pass `promtool check rules`
and their unit tests (`promtool test rules`), the scrape config passes `promtool check
config`, and the scrape jobs agree with the manifests' annotations and ports.

tests/cgroups/test_prometheus_scrape.py then runs it all against a real agent and a real
Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metrics_conventions import VOCABULARY
from tests.prometheus_server import (
    DASHBOARD,
    DEPLOY,
    PROMTOOL,
    RULES,
    RULES_TEST,
    SCRAPE_CONFIG,
    kubernetes_sd_as_static,
)
from tests.promql_refs import declared, grouping, matchers, metric_names

# Labels the scrape adds to every series (scrape-config.yaml's relabelling).
TARGET_LABELS = {"instance", "job", "node", "pod"}
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval"}
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
RECORDED = re.compile(r"\bcolocd:[a-z0-9_:]+")
# Declared metrics the agent dashboard leaves out, and why.
NOT_ON_THE_DASHBOARD = {
    # Written by `colocd policy controller`, which is no node agent.
    "colocd_policy_status_writes_total": "the policy controller's",
}

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)"
)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def panel_targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels() for t in p["targets"]]


def variable_queries() -> dict[str, str]:
    return {
        v["name"]: v["query"]["query"]
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query"
    }


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


def expressions() -> list[tuple[str, str]]:
    """(where, expr) for every panel target, variable query and rule."""
    found = [(f"panel {title!r}", t["expr"]) for title, t in panel_targets()]
    found += [(f"variable {name}", q) for name, q in variable_queries().items()]
    found += [(f"rule {r.get('alert') or r['record']}", r["expr"]) for r in rules()]
    return found


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


# --- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_is_well_formed() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels()]
    assert len(titles) == len(set(titles))
    cells: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    source = {"type": "prometheus", "uid": "${datasource}"}
    for p in panels():
        assert p["datasource"] == source and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        assert all(t["datasource"] == source for t in p["targets"]), p["title"]
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["datasource", "node", "instance"]


def test_every_panel_is_templated_by_instance_and_uses_only_defined_variables() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | GRAFANA_BUILTINS
    for where, expr in expressions():
        if where.startswith("rule"):
            continue
        assert set(VARIABLE.findall(expr)) <= defined, (where, expr)
    for title, t in panel_targets():
        for metric in metric_names(t["expr"]):
            filters = {(m.label, m.op, m.value) for m in matchers(t["expr"]) if m.metric == metric}
            assert ("instance", "=~", "$instance") in filters, (title, metric)
    assert variable_queries() == {
        "node": "label_values(colocd_agent_info, nodename)",
        "instance": 'label_values(colocd_agent_info{nodename=~"$node"}, instance)',
    }


def test_dashboard_and_rules_refer_only_to_metrics_and_labels_the_agent_declares() -> None:
    known = declared()
    recorded = {r["record"] for r in rules() if "record" in r}
    for where, expr in expressions():
        names = metric_names(expr)
        assert names <= known.keys(), (where, names - known.keys())
        assert set(RECORDED.findall(expr)) <= recorded, where
        labels = set(TARGET_LABELS).union(*(known[n].labels for n in names))
        for m in matchers(expr):
            assert m.label in known[m.metric].labels | TARGET_LABELS, (where, m)
            vocabulary = VOCABULARY.get(m.label)
            if vocabulary is not None:
                assert set(m.value.split("|")) <= vocabulary, (where, m)
        if not RECORDED.search(expr):  # a recorded series has the labels its rule kept
            assert grouping(expr) <= labels, (where, grouping(expr) - labels)
    for title, t in panel_targets():
        names = metric_names(t["expr"])
        kept = grouping(t["expr"]) or set(TARGET_LABELS).union(*(known[n].labels for n in names))
        assert set(LEGEND.findall(t["legendFormat"])) <= kept, (title, t["legendFormat"])


def test_every_metric_the_agent_exports_is_on_the_dashboard() -> None:
    shown = set().union(*(metric_names(t["expr"]) for _, t in panel_targets()))
    for sample, metric in declared().items():
        if sample in NOT_ON_THE_DASHBOARD:
            continue
        assert metric.samples & shown, f"{sorted(metric.samples)} is on no panel"


# --- the rules ---------------------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = yaml.safe_load(RULES.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "sum by (instance (colocd_loop_ticks_total)"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = promtool("check", "rules", str(path))
    assert done.returncode != 0
    assert "parse error" in done.stdout + done.stderr


@needs_promtool
def test_the_alerts_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = yaml.safe_load(RULES_TEST.read_text())["tests"]
    checks = [c for case in cases for c in case.get("alert_rule_test", [])]
    alerts = {r["alert"] for r in rules() if "alert" in r}
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert alerts == firing
    assert alerts == quiet
    brief = {
        "ColocdDegraded",
        "ColocdApplyFailures",
        "ColocdFastPathSlow",
        "ColocdTickSlow",
        "ColocdPolicyInvalid",
        "ColocdEvictionStorm",
        "ColocdAgentDown",
    }
    assert brief <= alerts
    slow = next(r for r in rules() if r.get("alert") == "ColocdFastPathSlow")
    assert slow["expr"].endswith("> 0.25")  # p95 over 250 ms


# --- scraping ----------------------------------------------------------------------------------


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_the_scrape_jobs_agree_with_the_manifests() -> None:
    jobs = scrape_jobs()
    for job, manifest in (
        ("colocd-agent", "daemonset.yaml"),
        ("colocd-policy-controller", "policy-controller.yaml"),
    ):
        template = yaml.safe_load((DEPLOY / manifest).read_text())["spec"]["template"]
        keep = next(
            r
            for r in jobs[job]["relabel_configs"]
            if r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        )
        assert keep["action"] == "keep"
        assert keep["regex"] == template["metadata"]["labels"]["app.kubernetes.io/name"]
        annotations = template["metadata"]["annotations"]
        container = template["spec"]["containers"][0]
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
        (addr,) = [a for a in container["args"] if a.startswith("--metrics-addr=")]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == str(port)
        assert addr.endswith(f":{port}")
    # The alerts name the agents' job.
    named = {m.value for r in rules() for m in matchers(r["expr"]) if m.label == "job"}
    named |= set(re.findall(r'job="([^"]+)"', "".join(r["expr"] for r in rules())))
    assert named and named <= jobs.keys()


@needs_promtool
def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == ["rules.yaml"]  # beside it
    # This promtool (Debian's) has no Kubernetes discovery: check the rest of each job.
    config["scrape_configs"] = [
        kubernetes_sd_as_static(job, ["10.0.0.1:9464"], {}) for job in config["scrape_configs"]
    ]
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and f"SUCCESS: {len(rules())} rules found" in done.stdout
