"""agent.report.metrics: names, units and bounded labels in one place, values from a real plan, and
the HTTP endpoint."""

from __future__ import annotations

import re
import urllib.request

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.report.metrics import AgentMetrics, serve
from isolation.executor import ApplyReport, Outcome, Result, Write
from qos.decide import BrainState, decide
from qos.settings import Indicator, QosSettings
from tests.metrics_conventions import problems
from tests.qos_builders import node, pod, snapshot

NAME = re.compile(r"^colocd_[a-z]+_[a-z0-9_]+$")
BOUNDED_LABELS = {
    "tier",
    "knob",
    "result",
    "resource",
    "reason",
    "trigger",
    "mode",
    "type",
    "error",
    "state",
    "indicator",
    "direction",
    "gpu",  # a device index, bounded by GPU_INDICES
    "check",
    # colocd_agent_info only: one value each per process.
    "nodename",
    "version",
}


def names(registry: CollectorRegistry) -> dict[str, set[str]]:
    """metric family -> label names, from what the registry exposes."""
    out: dict[str, set[str]] = {}
    for family in registry.collect():
        labels = out.setdefault(family.name, set())
        for sample in family.samples:
            labels.update(k for k in sample.labels if k != "le")
    return out


def test_every_metric_is_named_by_the_convention_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    AgentMetrics(registry)
    found = names(registry)
    assert len(found) >= 20
    for name, labels in found.items():
        assert NAME.match(name), name
        assert labels <= BOUNDED_LABELS, (name, labels)
    exposed = {s.name for f in registry.collect() for s in f.samples}
    for name in (
        "colocd_loop_tick_duration_seconds_count",
        "colocd_loop_ticks_total",
        "colocd_budget_batch_cpu_cores",
        "colocd_budget_batch_memory_bytes",
        "colocd_budget_predicted_online_cpu_cores",
        "colocd_margin_cpu_ratio",
        "colocd_executor_writes_total",
        "colocd_fastpath_reaction_seconds_bucket",
        "colocd_tier_pods",
        # The Kubernetes side's, declared in the same module on the same registry.
        "colocd_informer_objects",
        "colocd_node_status_writes",
        "colocd_eviction_requests",
    ):
        assert name in exposed or name in found, name
    counters = [f for f in registry.collect() if f.type == "counter"]
    assert counters and all(
        s.name.endswith(("_total", "_created")) for f in counters for s in f.samples
    )


def test_values_come_from_the_plan_and_the_apply_report() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    state = node(pod("web", cpu="1"), pod("job", batch_cpu=500))
    plan, _ = decide(snapshot(10.0, state=state), BrainState(), QosSettings(), 10.0)
    m.plan(plan)
    value = registry.get_sample_value
    assert value("colocd_budget_batch_cpu_cores") == plan.budgets.cpu.amount / 1000
    assert value("colocd_budget_batch_memory_bytes") == plan.budgets.memory.amount
    assert plan.budgets.cpu.terms is not None
    assert value("colocd_budget_predicted_online_cpu_cores") == plan.budgets.cpu.terms.online / 1000
    assert value("colocd_margin_cpu_ratio") == plan.margin.fraction
    assert value("colocd_budget_capacity_cpu_cores") == plan.budgets.cpu.capacity / 1000
    assert value("colocd_budget_capacity_memory_bytes") == plan.budgets.memory.capacity
    psi = {"indicator": "cpu_psi_some_avg10"}
    assert value("colocd_margin_indicator_target", psi) == 20.0  # the default target
    assert value("colocd_budget_degraded", {"resource": "cpu"}) == 0
    write = Write("cpu.idle", "kubepods/besteffort", True)
    m.applied(ApplyReport((Result(write, Outcome.APPLIED), Result(write, Outcome.VANISHED))))
    assert value("colocd_executor_writes_total", {"knob": "cpu.idle", "result": "applied"}) == 1
    assert value("colocd_executor_writes_total", {"knob": "cpu.idle", "result": "vanished"}) == 1
    m.clamp("usage", 0.06)
    assert value("colocd_fastpath_clamps_total", {"trigger": "usage"}) == 1
    assert value("colocd_fastpath_reaction_seconds_bucket", {"le": "0.075"}) == 1
    m.degraded_reasons(["pod_source"])
    assert value("colocd_loop_degraded", {"reason": "pod_source"}) == 1
    assert value("colocd_loop_degraded", {"reason": "stale_readings"}) == 0


def test_a_switched_indicator_leaves_no_stale_series() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    state = node(pod("web", cpu="1"))
    psi = QosSettings()
    throttling = psi.model_copy(
        update={"margin": psi.margin.model_copy(update={"indicator": Indicator.THROTTLING})}
    )
    for settings in (psi, throttling):
        m.plan(decide(snapshot(10.0, state=state), BrainState(), settings, 10.0)[0])
    found = {
        s.labels["indicator"]: s.value
        for f in registry.collect()
        if f.name == "colocd_margin_indicator_target"
        for s in f.samples
    }
    assert found == {"cfs_throttled_ratio": 0.05}


def test_the_info_metric_names_the_node() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    m.identify("node-1")
    m.identify("node-2")  # replaces, never adds
    samples = [s for f in registry.collect() if f.name == "colocd_agent_info" for s in f.samples]
    assert [(s.labels["nodename"], s.value) for s in samples] == [("node-2", 1.0)]
    assert samples[0].labels["version"]


def test_the_exposition_follows_the_naming_conventions() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    m.identify("node-1")
    state = node(pod("web", cpu="1"), pod("job", batch_cpu=500))
    m.plan(decide(snapshot(10.0, state=state), BrainState(), QosSettings(), 10.0)[0])
    m.tick("ok", 0.004)
    m.clamp("pressure", 0.03)
    assert problems(generate_latest(registry).decode()) == []


def test_the_convention_check_catches_each_kind_of_mistake() -> None:
    registry = CollectorRegistry()
    Gauge("colocd_fastpath_latency_ms", "ms, not seconds", ["pod"], registry=registry).labels(
        "web-7d9f"
    ).set(3)
    Gauge("colocd_budget_online_memory", "no unit", registry=registry).set(1)
    Counter("colocd_tier_moves", "by tier", ["tier"], registry=registry).labels("gold").inc()
    Histogram("colocd_loop_tick", "no unit", registry=registry).observe(0.1)
    info = Gauge("colocd_agent_info", "two nodes", ["nodename", "version"], registry=registry)
    info.labels("a", "1").set(1)
    info.labels("b", "1").set(1)
    Gauge("colocd_other_info", "info labels elsewhere", ["nodename"], registry=registry).labels(
        "a"
    ).set(1)
    found = problems(generate_latest(registry).decode())
    assert found == [
        "colocd_fastpath_latency_ms: 'ms' is not a base unit",
        "colocd_fastpath_latency_ms: a latency metric must end in one of ('_seconds',)",
        "colocd_fastpath_latency_ms: label pod='web-7d9f' is not a bounded label",
        "colocd_budget_online_memory: a memory metric must end in one of ('_bytes',)",
        "colocd_tier_moves_total: label tier='gold' is outside its vocabulary",
        "colocd_loop_tick: a histogram must end in its base unit",
        "colocd_agent_info: one sample, valued 1, labelled ['nodename', 'version']",
        "colocd_other_info: label nodename='a' is not a bounded label",
    ]


def test_two_agents_in_one_process_do_not_collide() -> None:
    AgentMetrics(CollectorRegistry())
    AgentMetrics(CollectorRegistry())


def test_metrics_are_served_over_http() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    m.tick("ok", 0.004)
    server = serve(registry, "127.0.0.1", 0)
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
    finally:
        server.shutdown()
    assert 'colocd_loop_ticks_total{result="ok"} 1.0' in body
    assert "colocd_loop_tick_duration_seconds_count 1.0" in body
