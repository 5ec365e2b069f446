"""Policies from the API server: the agent's watcher, and the controller that writes status."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from agent.act.events import EventRecorder
from agent.policy.status import PolicyStatusController, run_status_controller
from agent.policy.tracker import PolicyDocument, parse_document
from agent.policy.watcher import PolicyWatcher
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.kube import NODES, POLICIES, KubeClient
from agent.sources.node_info import NodeInfo, NodeWatcher, parse_node_labels
from qos.settings import QosSettings

from .apiserver import ApiServer, wait_for
from .conftest import FakeClock
from .objects import node, policy, pool

GPU = {"pool": "gpu"}


@pytest.fixture
def watchers(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics, backoff: Backoff
) -> Iterator[tuple[NodeWatcher, PolicyWatcher]]:
    api.create(node("node-1", GPU))
    recorder = EventRecorder(client, host="node-1", metrics=metrics)
    node_watcher = NodeWatcher(client, "node-1", metrics, backoff=backoff)
    policy_watcher = PolicyWatcher(client, node_watcher, metrics, recorder, backoff=backoff)
    node_watcher.start()
    policy_watcher.start()
    try:
        assert node_watcher.wait_synced(10) and policy_watcher.wait_synced(10)
        yield node_watcher, policy_watcher
    finally:
        policy_watcher.stop()
        node_watcher.stop()


# The built-in layer is the brain's own default (qos.settings), converted.
BUILT_IN_CPU_PERCENT = round(QosSettings().reclaim.cpu_max_fraction * 100)


def cpu_percent(watcher: PolicyWatcher) -> int:
    return watcher.current().resolution.settings.reclaim.max_percent.cpu


def test_node_watcher_knows_labels_and_allocatable(
    watchers: tuple[NodeWatcher, PolicyWatcher],
) -> None:
    info = watchers[0].info()
    assert info is not None and info.labels["pool"] == "gpu"
    assert info.allocatable is not None
    assert (info.allocatable.cpu_milli, info.allocatable.memory_bytes) == (8000, 32 << 30)
    assert info.allocatable.cpu_source == "Node allocatable"


def test_policies_are_watched_and_layered_for_this_node(
    api: ApiServer, watchers: tuple[NodeWatcher, PolicyWatcher]
) -> None:
    _, watcher = watchers
    assert cpu_percent(watcher) == BUILT_IN_CPU_PERCENT
    api.create(policy("cluster", {"scope": "Cluster", "reclaim": {"maxPercent": {"cpu": 70}}}))
    wait_for(lambda: cpu_percent(watcher) == 70)
    api.create(pool("gpu", 10, GPU, reclaim={"maxPercent": {"cpu": 45}}))
    wait_for(lambda: cpu_percent(watcher) == 45)
    assert str(watcher.current().resolution.provenance["reclaim.maxPercent.cpu"]) == (
        "NodePool gpu (priority 10)"
    )
    # The node leaves the pool: its labels change, and the pool no longer applies.
    api.patch(node("node-1"), {"metadata": {"labels": {"pool": "cpu"}}})
    wait_for(lambda: cpu_percent(watcher) == 70)
    api.delete(policy("cluster", {}))
    wait_for(lambda: cpu_percent(watcher) == BUILT_IN_CPU_PERCENT)


def test_an_invalid_update_keeps_the_last_good_policy(
    api: ApiServer, watchers: tuple[NodeWatcher, PolicyWatcher], registry: CollectorRegistry
) -> None:
    _, watcher = watchers
    body = pool("gpu", 10, GPU, reclaim={"maxPercent": {"cpu": 45}})
    api.create(body)
    wait_for(lambda: cpu_percent(watcher) == 45)
    # kmock, unlike the real API server, stores what the CRD schema would refuse.
    api.patch(body, {"spec": {"reclaim": {"maxPercent": {"cpu": 450}}}})
    wait_for(lambda: watcher.current().invalid_objects)
    current = watcher.current()
    assert cpu_percent(watcher) == 45
    assert "generation 2 is invalid, keeping generation 1" in current.invalid_objects[0]
    assert registry.get_sample_value("colocd_policy_objects", {"state": "invalid"}) == 1
    assert registry.get_sample_value("colocd_policy_rejected_total") == 1
    # Fixed: the new version takes effect.
    api.patch(body, {"spec": {"reclaim": {"maxPercent": {"cpu": 35}}}})
    wait_for(lambda: cpu_percent(watcher) == 35)
    assert watcher.current().invalid_objects == ()


def test_an_inconsistent_merge_keeps_the_last_good_and_tells_the_node(
    api: ApiServer, watchers: tuple[NodeWatcher, PolicyWatcher], registry: CollectorRegistry
) -> None:
    _, watcher = watchers
    api.create(
        policy(
            "cluster",
            {
                "scope": "Cluster",
                "network": {"linkRate": "10Gbit", "tiers": {"online": {"rate": "8Gbit"}}},
            },
        )
    )
    wait_for(lambda: watcher.current().resolution.settings.network.link_rate == "10Gbit")
    api.create(
        policy("slow", {"scope": "Node", "nodeNames": ["node-1"], "network": {"linkRate": "1Gbit"}})
    )
    wait_for(lambda: watcher.current().fallback)
    assert watcher.current().resolution.settings.network.link_rate == "10Gbit"
    assert registry.get_sample_value("colocd_policy_effective_fallback") == 1
    events = [r.body for r in api.requests() if r.path.endswith("/events")]
    assert [
        (e["reason"], e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in events
    ] == [("PolicyConflict", "Node", "node-1")]
    assert "above linkRate 1Gbit" in events[0]["message"]


# --- the status controller -----------------------------------------------------------------


def snapshot(
    client: KubeClient, metrics: KubeMetrics
) -> tuple[dict[str, PolicyDocument], list[NodeInfo]]:
    policies = {d["metadata"]["name"]: parse_document(d) for d in client.list(POLICIES).items}
    nodes = [parse_node_labels(n) for n in client.list(NODES).items]
    return policies, nodes


def status_patches(api: ApiServer) -> list[str]:
    return [
        r.path for r in api.requests() if r.method == "PATCH" and "colocationpolicies" in r.path
    ]


def test_status_reports_validity_and_matched_nodes_and_writes_only_on_change(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics, clock: FakeClock
) -> None:
    for name, labels in (("n1", GPU), ("n2", GPU), ("n3", {"pool": "cpu"})):
        api.create(node(name, labels))
    api.create(policy("cluster", {"scope": "Cluster"}))
    api.create(pool("gpu", 10, GPU))
    bad = pool("typo", 5, GPU, gpu={"reservePercent": 300})
    api.create(bad)
    recorder = EventRecorder(client, host="controller", metrics=metrics)
    controller = PolicyStatusController(
        client, metrics, recorder, clock=clock, min_write_interval_s=10
    )

    report = controller.reconcile(*snapshot(client, metrics))
    assert sorted(report.written) == ["cluster", "gpu", "typo"]
    status = {n: api.get(policy(n, {}))["status"] for n in ("cluster", "gpu", "typo")}
    assert [status[n]["matchedNodes"] for n in ("cluster", "gpu", "typo")] == [3, 2, 0]
    valid = status["gpu"]["conditions"][0]
    assert (valid["type"], valid["status"], valid["reason"]) == ("Valid", "True", "Valid")
    invalid = status["typo"]["conditions"][0]
    assert (invalid["status"], invalid["reason"]) == ("False", "InvalidSpec")
    assert (
        invalid["message"] == "spec.gpu.reservePercent: 300 is not a percentage between 0 and 100"
    )
    assert status["typo"]["observedGeneration"] == 1
    events = [r.body for r in api.requests() if r.path.endswith("/events")]
    assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [
        ("InvalidPolicy", "typo")
    ]

    # Nothing changed: nothing written, however often it runs.
    clock.advance(60)
    for _ in range(3):
        assert controller.reconcile(*snapshot(client, metrics)).written == []
    assert len(status_patches(api)) == 3

    # A node joins the pool: one write, at most once per interval.
    api.patch(node("n3"), {"metadata": {"labels": {"pool": "gpu"}}})
    assert controller.reconcile(*snapshot(client, metrics)).written == ["gpu"]
    api.create(node("n4", GPU))
    assert controller.reconcile(*snapshot(client, metrics)).deferred == ["gpu"]
    clock.advance(10)
    assert controller.reconcile(*snapshot(client, metrics)).written == ["gpu"]
    assert api.get(policy("gpu", {}))["status"]["matchedNodes"] == 4

    # The typo is fixed: valid again, with a Normal event.
    api.patch(bad, {"spec": {"gpu": {"reservePercent": 30}}})
    assert controller.reconcile(*snapshot(client, metrics)).written == ["typo"]
    fixed = api.get(policy("typo", {}))["status"]
    assert fixed["conditions"][0]["status"] == "True" and fixed["observedGeneration"] == 2
    assert fixed["matchedNodes"] == 4
    reasons = [r.body["reason"] for r in api.requests() if r.path.endswith("/events")]
    assert reasons == ["InvalidPolicy", "PolicyValid"]


def test_invalid_update_is_counted_on_its_last_valid_version(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics, clock: FakeClock
) -> None:
    api.create(node("n1", GPU))
    body = pool("gpu", 10, GPU)
    api.create(body)
    recorder = EventRecorder(client, host="controller", metrics=metrics)
    controller = PolicyStatusController(client, metrics, recorder, clock=clock)
    controller.reconcile(*snapshot(client, metrics))
    api.patch(body, {"spec": {"priority": 5000}})
    clock.advance(60)
    controller.reconcile(*snapshot(client, metrics))
    status = api.get(body)["status"]
    assert status["conditions"][0]["status"] == "False"
    assert status["matchedNodes"] == 1  # the agents still apply generation 1


def test_controller_loop_runs_until_stopped(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics, backoff: Backoff
) -> None:
    api.create(node("n1", GPU))
    api.create(policy("cluster", {"scope": "Cluster"}))
    recorder = EventRecorder(client, host="controller", metrics=metrics)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_status_controller,
        args=(client, metrics, recorder, stop),
        kwargs={"interval_s": 0.05, "min_write_interval_s": 0.2, "backoff": backoff},
    )
    thread.start()
    try:
        wait_for(
            lambda: (
                (api.get(policy("cluster", {})) or {}).get("status", {}).get("matchedNodes") == 1
            )
        )
        api.create(node("n2"))
        wait_for(lambda: api.get(policy("cluster", {}))["status"]["matchedNodes"] == 2, timeout=20)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    node_lists = [r for r in api.requests() if r.method == "GET" and r.path == "/api/v1/nodes"]
    assert all("PartialObjectMetadata" in r.headers["Accept"] for r in node_lists)
