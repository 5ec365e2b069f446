"""The real agent (`colocd run` on a kubelet-like tree of real v1 cgroups) scraped by a real
Prometheus, configured from the shipped scrape config and rules: the relabelling finds the
agent as Kubernetes would present its pod, every dashboard panel and every rule is a valid
query with the core ones answering, the rules evaluate cleanly and none fires on a healthy
agent, and the agent's exposition follows the naming conventions.

One agent and one Prometheus serve the whole module (about 15 s together).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from isolation.layout import Driver
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod, Resources
from tests.metrics_conventions import problems
from tests.processes import free_port, wait_for
from tests.prometheus_server import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS,
    RULES,
    SCRAPE_CONFIG,
    PrometheusServer,
    kubernetes_sd_as_static,
    meta_labels,
)

pytestmark = [
    pytest.mark.cgroup_v1,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="prometheus is not installed (Debian package prometheus)"
    ),
]

JOB = "colocd-agent"
# What Grafana would put in for its own variables ($instance comes from the agent).
GRAFANA = {"$__rate_interval": "10s", "$__range": "1m", "$__interval": "1s"}
# Panels that must show data on any running agent, Kubernetes or not.
CORE_PANELS = {
    "Agents up",
    "Oldest tick",
    "Batch CPU offered",
    "Batch memory offered",
    "CPU: batch budget vs predicted online and margin",
    "Memory: batch budget vs predicted online",
    "Margin indicator vs target",
    "Degraded, by reason",
    "Tick duration",
    "Ticks by result",
    "Pods per tier",
    "Writes by knob and outcome",
}


class Agent(NamedTuple):
    port: int
    node: str
    pods: list[Pod]


def web() -> Pod:
    cpu = Resources({"cpu": Decimal("0.5")})
    return Pod("shop", "web-frontend-7d9f", containers=(Container("app", cpu),))


def job() -> Pod:
    return Pod("jobs", "nightly-report-x2k4", containers=(Container("loop"),))


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def ticked(port: int) -> bool:
    try:
        return 'colocd_loop_ticks_total{result="ok"} 0.0' not in metrics_text(port)
    except OSError:  # not listening yet
        return False


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("agent")
    with KubeletTree(Driver.CGROUPFS) as tree:
        pods_dir = tmp / "pods"
        pods_dir.mkdir()
        pods = [tree.add_pod(p) for p in (web(), job())]
        for p in pods:
            tree.write_manifest(p, pods_dir)
        config = tmp / "colocd.json"
        config.write_text(json.dumps({"agent": {"tick_s": 1, "node_cgroup": tree.root}}))
        node, port = f"obs-node-{secrets.token_hex(3)}", free_port()
        argv = [sys.executable, "-m", "agent.cli", "run", "--pods", str(pods_dir)]
        argv += ["--kubelet-cgroup-root", tree.root, "--config", str(config)]
        argv += ["--node-name", node, "--state-dir", str(tmp / "state"), "--revert-on-exit"]
        argv += ["--metrics-addr", f"127.0.0.1:{port}"]
        log = tmp / "agent.log"
        with log.open("w") as out:  # a file, not a pipe nobody drains
            process = subprocess.Popen(argv, stderr=out, text=True)
        try:
            wait_for(lambda: ticked(port) or process.poll() is not None, 30, step=0.2)
            assert process.poll() is None, log.read_text()[-2000:]
            yield Agent(port, node, pods)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def prometheus_config(agent: Agent) -> dict[str, Any]:
    """scrape-config.yaml's agent job, discovering the agent as Kubernetes would present
    a pod of deploy/daemonset.yaml (its annotation pointing at the port used here), every
    second, with rules.yaml."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    template = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())["spec"]["template"]
    template["metadata"]["annotations"]["prometheus.io/port"] = str(agent.port)
    labels = meta_labels(template, agent.node, "colocd-agent-x7k2p")
    # The pod's address as discovery gives it: the host's IP with the container's port.
    job = kubernetes_sd_as_static(job, ["127.0.0.1:9464"], labels)
    job["scrape_interval"] = "1s"
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"] = [job]
    config["rule_files"] = [str(RULES)]
    return config


@pytest.fixture(scope="module")
def prometheus(
    agent: Agent, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    with PrometheusServer(prometheus_config(agent), tmp_path_factory.mktemp("prom")) as server:
        # Enough scrapes for rates, and every rule evaluated on them.
        ticks = f'count_over_time(colocd_loop_ticks_total{{job="{JOB}",result="ok"}}[1m]) >= 5'
        wait_for(lambda: server.query(ticks), 30, step=0.5)
        since = time.time()
        wait_for(lambda: evaluated_after(server, since), 15, step=0.5)
        yield server


def evaluated_after(server: PrometheusServer, since: float) -> bool:
    groups = server.api("rules")["groups"]
    return bool(groups) and all(
        _timestamp(r["lastEvaluation"]) > since for g in groups for r in g["rules"]
    )


def _timestamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def instance(agent: Agent) -> str:
    return f"127.0.0.1:{agent.port}"


def grafana(expr: str, agent: Agent) -> str:
    """The expression as Grafana sends it for this agent's instance."""
    for name, value in (*GRAFANA.items(), ("$instance", instance(agent))):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_the_shipped_relabelling_finds_the_agent_and_names_its_node(
    agent: Agent, prometheus: PrometheusServer
) -> None:
    (target,) = prometheus.api("targets")["activeTargets"]
    assert target["health"] == "up", target["lastError"]
    assert target["scrapeUrl"] == f"http://{instance(agent)}/metrics"
    labels = target["labels"]
    assert labels == {
        "instance": instance(agent),
        "job": JOB,
        "node": agent.node,
        "pod": "colocd-agent-x7k2p",
    }


def test_the_dashboard_variables_find_the_node_and_its_instance(
    agent: Agent, prometheus: PrometheusServer
) -> None:
    # label_values(colocd_agent_info, nodename), then the instances of the nodes picked.
    nodes = prometheus.api("label/nodename/values", **{"match[]": "colocd_agent_info"})
    assert nodes == [agent.node]
    match = f'colocd_agent_info{{nodename=~"{agent.node}"}}'
    assert prometheus.api("label/instance/values", **{"match[]": match}) == [instance(agent)]


def test_every_panel_is_a_valid_query_and_the_core_panels_have_data(
    agent: Agent, prometheus: PrometheusServer
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    seen = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            result = prometheus.query(grafana(target["expr"], agent))  # raises if invalid
            if panel["title"] in CORE_PANELS:
                assert result, (panel["title"], target["expr"])
                seen.add(panel["title"])
    assert seen == CORE_PANELS

    def value(expr: str) -> dict[str, float]:
        return {
            json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
            for r in prometheus.query(grafana(expr, agent))
        }

    pods = value('sum by (tier) (colocd_tier_pods{instance=~"$instance"})')
    assert pods == {'{"tier": "batch"}': 1, '{"tier": "dedicated"}': 0} | {
        '{"tier": "online"}': 1,
        '{"tier": "system"}': 0,
    }
    (p95,) = value(
        "histogram_quantile(0.95, sum by (instance, le) "
        '(rate(colocd_loop_tick_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
    ).values()
    assert 0 < p95 <= 1.0  # a tick takes milliseconds here; 1 s is the top bucket
    (rate,) = value(
        'sum by (instance) (rate(colocd_loop_ticks_total{instance=~"$instance", result="ok"}'
        "[$__rate_interval]))"
    ).values()
    assert 0.3 < rate < 2  # one tick a second, with a generous margin on a busy machine


def test_every_rule_loads_evaluates_cleanly_and_none_fires_on_a_healthy_agent(
    agent: Agent, prometheus: PrometheusServer
) -> None:
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    groups = prometheus.api("rules")["groups"]
    loaded = {g["name"]: len(g["rules"]) for g in groups}
    assert loaded == {g["name"]: len(g["rules"]) for g in shipped}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok" and not rule.get("lastError"), rule
            prometheus.query(rule["query"])  # valid on its own too
    assert prometheus.api("alerts")["alerts"] == []
    # The recording rules answer for this agent.
    (tick_p95,) = prometheus.query("colocd:loop_tick_duration_seconds:p95_5m")
    assert tick_p95["metric"] == {
        "__name__": "colocd:loop_tick_duration_seconds:p95_5m",
        "instance": instance(agent),
    }
    assert 0 < float(tick_p95["value"][1]) <= 1.0
    # With one agent, the fleet's batch CPU is that agent's (one of its recent values).
    (fleet,) = prometheus.query("colocd:budget_batch_cpu_cores:sum")
    (own,) = prometheus.query("colocd_budget_batch_cpu_cores[1m]")
    assert float(fleet["value"][1]) in {float(v) for _, v in own["values"]}
    # The agent-down alert's expression sees this agent up.
    (up,) = prometheus.query(f'up{{job="{JOB}"}}')
    assert up["value"][1] == "1"


def test_the_exposition_follows_the_naming_conventions(agent: Agent) -> None:
    text = metrics_text(agent.port)
    assert problems(text) == []
    # No label carries anything about a pod: name, namespace or UID.
    values = {
        v
        for f in text_string_to_metric_families(text)
        for s in f.samples
        for v in s.labels.values()
    }
    for pod in agent.pods:
        assert not {pod.name, pod.namespace, pod.uid} & values
    assert f'colocd_agent_info{{nodename="{agent.node}"' in text
