"""RBAC: the ClusterRoles in deploy/rbac.yaml grant exactly what the code calls.

Every request the code makes against the API server double is recorded, mapped to the
(verb, apiGroup, resource) the real API server would authorize, and checked against the
role. Requests the tests make themselves (to set things up) are told apart by user agent.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.act.events import EventRecorder
from agent.act.evictor import EvictionRequest, EvictionResult, Evictor
from agent.act.node_resources import BatchCapacity, NodeResourcePublisher
from agent.policy.status import run_status_controller
from agent.policy.watcher import PolicyWatcher
from agent.report.metrics import KubeMetrics
from agent.sources.kube import KubeClient
from agent.sources.node_info import NodeWatcher
from agent.sources.pod_source import ApiPodSource

from .apiserver import ApiServer, Recorded, wait_for
from .objects import node, pod, policy, pool

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
CLIENT_AGENT = "OpenAPI-Generator/"

Grant = tuple[str, str, str]  # verb, apiGroup, resource


def authorization(request: Recorded) -> Grant:
    """What kube-apiserver's RequestInfo would make of this request."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
    resource = "/".join([plural, *sub])
    verb = {
        "GET": "watch" if request.params.get("watch") == "true" else ("get" if name else "list"),
        "POST": "create",
        "PATCH": "patch",
        "PUT": "update",
        "DELETE": "delete" if name else "deletecollection",
    }[request.method]
    return verb, group, resource


def granted(role: str) -> set[Grant]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    rules = next(
        d["rules"] for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role
    )
    return {
        (verb, group, resource)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def used_by_code(api: ApiServer) -> set[Grant]:
    return {
        authorization(r)
        for r in api.requests()
        if r.headers.get("User-Agent", "").startswith(CLIENT_AGENT)
    }


def refused(used: set[Grant], role: str) -> set[Grant]:
    return used - granted(role)


@pytest.mark.parametrize(
    ("method", "path", "params", "expected"),
    [
        ("GET", "/api/v1/pods", {"watch": "true"}, ("watch", "", "pods")),
        ("GET", "/api/v1/pods", {}, ("list", "", "pods")),
        ("GET", "/api/v1/namespaces/a/pods/b", {}, ("get", "", "pods")),
        ("POST", "/api/v1/namespaces/a/pods/b/eviction", {}, ("create", "", "pods/eviction")),
        ("PATCH", "/api/v1/nodes/n/status", {}, ("patch", "", "nodes/status")),
        ("POST", "/api/v1/namespaces/default/events", {}, ("create", "", "events")),
        ("DELETE", "/api/v1/namespaces/a/pods", {}, ("deletecollection", "", "pods")),
        (
            "PATCH",
            "/apis/colocd.io/v1alpha1/colocationpolicies/p/status",
            {},
            ("patch", "colocd.io", "colocationpolicies/status"),
        ),
    ],
)
def test_requests_map_to_rbac_verbs(method: str, path: str, params: dict, expected: Grant) -> None:
    assert authorization(Recorded(method, path, params, {}, None)) == expected


def test_a_verb_the_role_does_not_grant_is_caught() -> None:
    delete = Recorded("DELETE", "/api/v1/namespaces/a/pods/b", {}, {}, None)
    read = Recorded("GET", "/api/v1/nodes/n", {}, {}, None)
    assert refused({authorization(delete), authorization(read)}, "colocd-agent") == {
        ("delete", "", "pods"),
        ("get", "", "nodes"),
    }


def seed(api: ApiServer) -> None:
    api.create(node("node-1", {"pool": "gpu"}))
    api.create(pod("web", "node-1"))
    api.create(pod("spark-1", "node-1", cpu=None))
    api.create(policy("cluster", {"scope": "Cluster"}))
    api.create(pool("gpu", 10, {"pool": "gpu"}, gpu={"enabled": True}))


def test_the_agent_uses_exactly_what_its_role_grants(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics
) -> None:
    seed(api)
    api.script_evictions([(429, {"Retry-After": "0"})])
    recorder = EventRecorder(client, host="node-1", metrics=metrics)
    pods = ApiPodSource(client, "node-1", metrics)
    node_watcher = NodeWatcher(client, "node-1", metrics)
    policies = PolicyWatcher(client, node_watcher, metrics, recorder)
    for part in (pods, node_watcher, policies):
        part.start()
    try:
        assert pods.wait_synced(10) and node_watcher.wait_synced(10) and policies.wait_synced(10)
        assert policies.current().resolution.settings.gpu.enabled is True
        publisher = NodeResourcePublisher(client, "node-1", metrics, rng=random.Random(1))
        assert publisher.publish(BatchCapacity(1000, 1 << 30, 0)).written
        evictor = Evictor(client, recorder, metrics, initial_backoff_s=0.01)
        victim = next(p for p in pods.snapshot().pods if p.name == "spark-1")
        request = EvictionRequest.for_pod(victim, "test")
        assert evictor.evict(request).result is EvictionResult.BLOCKED
        wait_for(lambda: evictor.evict(request).result is EvictionResult.EVICTED, timeout=5)
        wait_for(lambda: all(p.name != "spark-1" for p in pods.snapshot().pods))
    finally:
        for part in (policies, node_watcher, pods):
            part.stop()
    used = used_by_code(api)
    assert refused(used, "colocd-agent") == set()
    assert granted("colocd-agent") - used == set(), "granted but never used: drop it"


def test_the_policy_controller_uses_exactly_what_its_role_grants(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics
) -> None:
    seed(api)
    api.create(pool("broken", 1, {"pool": "gpu"}, gpu={"reservePercent": 500}))
    recorder = EventRecorder(client, host="controller", metrics=metrics)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_status_controller,
        args=(client, metrics, recorder, stop),
        kwargs={"interval_s": 0.05},
    )
    thread.start()
    try:

        def status_written() -> Any:
            broken = api.get(policy("broken", {})) or {}
            return broken.get("status", {}).get("conditions")

        wait_for(status_written)
    finally:
        stop.set()
        thread.join(10)
    used = used_by_code(api)
    assert refused(used, "colocd-policy-controller") == set()
    assert granted("colocd-policy-controller") - used == set(), "granted but never used: drop it"
