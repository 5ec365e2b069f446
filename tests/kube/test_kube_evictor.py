"""Evictions through the Eviction API, with back-off on 429, Events and metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from agent.act.events import EventRecorder, EventType, ObjectRef
from agent.act.evictor import EvictionRequest, EvictionResult, Evictor
from agent.report.metrics import KubeMetrics
from agent.sources.kube import KubeClient

from .apiserver import ApiServer
from .conftest import FakeClock
from .objects import pod


@pytest.fixture
def recorder(client: KubeClient, metrics: KubeMetrics, clock: FakeClock) -> EventRecorder:
    return EventRecorder(client, host="node-1", metrics=metrics, clock=clock)


@pytest.fixture
def evictor(
    client: KubeClient, recorder: EventRecorder, metrics: KubeMetrics, clock: FakeClock
) -> Evictor:
    return Evictor(client, recorder, metrics, clock=clock)


def request_for(api: ApiServer, name: str) -> EvictionRequest:
    created = api.create(pod(name, cpu=None))
    uid = created["metadata"]["uid"]
    return EvictionRequest("default", name, uid, "node memory 82% above 70% for 30s")


def evictions(api: ApiServer) -> list[str]:
    return [r.path for r in api.requests() if r.path.endswith("/eviction")]


def events(api: ApiServer) -> list[dict]:
    return [r.body for r in api.requests() if r.method == "POST" and r.path.endswith("/events")]


def count(registry: CollectorRegistry, result: str) -> float:
    value = registry.get_sample_value("colocd_eviction_requests_total", {"result": result})
    return value or 0.0


def test_every_result_is_counted_from_zero(evictor: Evictor, registry: CollectorRegistry) -> None:
    # Present before the first eviction, so an alert on increase() sees the first failure.
    for result in EvictionResult:
        assert (
            registry.get_sample_value("colocd_eviction_requests_total", {"result": result.value})
            == 0
        ), result


def test_429_backs_off_then_the_eviction_succeeds(
    api: ApiServer, evictor: Evictor, clock: FakeClock, registry: CollectorRegistry
) -> None:
    req = request_for(api, "spark-exec-1")
    api.script_evictions([(429, {"Retry-After": "10"})])

    blocked = evictor.evict(req)
    assert blocked.result is EvictionResult.BLOCKED
    assert blocked.retry_at == pytest.approx(clock.now + 10, abs=1.5)
    assert "disruption budget" in blocked.message

    clock.advance(5)
    waiting = evictor.evict(req)
    assert waiting.result is EvictionResult.BACKOFF
    assert len(evictions(api)) == 1  # not asked again inside the back-off

    clock.advance(6)
    done = evictor.evict(req)
    assert done.result is EvictionResult.EVICTED
    assert evictions(api) == ["/api/v1/namespaces/default/pods/spark-exec-1/eviction"] * 2
    assert api.get(pod("spark-exec-1")) is None  # the API server deleted it

    body = [r.body for r in api.requests() if r.path.endswith("/eviction")][-1]
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["deleteOptions"]["preconditions"] == {"uid": req.uid}

    reasons = [(e["reason"], e["type"], e["involvedObject"]["uid"]) for e in events(api)]
    assert reasons == [
        ("EvictionBlocked", "Warning", req.uid),
        ("Evicted", "Warning", req.uid),
    ]
    assert "node memory 82% above 70% for 30s" in events(api)[-1]["message"]
    assert [count(registry, r) for r in ("blocked", "backoff", "evicted")] == [1, 1, 1]


def test_429_without_retry_after_backs_off_exponentially(
    api: ApiServer, evictor: Evictor, clock: FakeClock
) -> None:
    req = request_for(api, "job-1")
    api.script_evictions([(429, {}), (429, {})])
    first = evictor.evict(req)
    first_delay = first.retry_at - clock.now
    clock.now = first.retry_at
    second = evictor.evict(req)
    assert second.result is EvictionResult.BLOCKED
    assert 4 <= first_delay <= 6  # 5 s +/- 10 %
    assert second.retry_at - clock.now > 1.5 * first_delay  # doubled, give or take jitter


def test_dry_run_calls_nothing(
    api: ApiServer, evictor: Evictor, registry: CollectorRegistry
) -> None:
    req = request_for(api, "job-2")
    outcome = evictor.evict(req, dry_run=True)
    assert outcome.result is EvictionResult.DRY_RUN
    assert evictions(api) == [] and events(api) == []
    assert api.get(pod("job-2")) is not None
    assert count(registry, "dry_run") == 1


def test_a_pod_already_gone_is_not_an_error(api: ApiServer, evictor: Evictor) -> None:
    req = request_for(api, "job-3")
    api.delete(pod("job-3"))
    assert evictor.evict(req).result is EvictionResult.GONE


def test_a_pod_recreated_under_the_same_name_is_not_evicted_in_its_place(
    api: ApiServer, evictor: Evictor, registry: CollectorRegistry
) -> None:
    # Issue 11: the eviction named the pod only, so its successor could be evicted instead.
    req = request_for(api, "job-5")
    api.delete(pod("job-5"))
    successor = api.create(pod("job-5", cpu=None))
    assert successor["metadata"]["uid"] != req.uid
    outcome = evictor.evict(req)
    assert outcome.result is EvictionResult.GONE and "replaced" in outcome.message
    assert api.get(pod("job-5")) is not None  # the new pod still runs
    assert evictions(api) == ["/api/v1/namespaces/default/pods/job-5/eviction"]
    assert count(registry, "gone") == 1 and count(registry, "evicted") == 0


def test_other_api_errors_fail_and_back_off(
    api: ApiServer, evictor: Evictor, clock: FakeClock
) -> None:
    req = request_for(api, "job-4")
    api.script_evictions([(500, {})])
    failed = evictor.evict(req)
    assert failed.result is EvictionResult.FAILED and failed.retry_at is not None
    assert evictor.evict(req).result is EvictionResult.BACKOFF


# --- events -------------------------------------------------------------------------------


def test_repeated_events_are_written_once_per_window(
    api: ApiServer, recorder: EventRecorder, clock: FakeClock, registry: CollectorRegistry
) -> None:
    ref = ObjectRef("v1", "Node", "node-1")
    assert recorder.record(ref, EventType.WARNING, "PolicyConflict", "same text")
    assert not recorder.record(ref, EventType.WARNING, "PolicyConflict", "same text")
    assert recorder.record(ref, EventType.WARNING, "PolicyConflict", "other text")
    clock.advance(601)
    assert recorder.record(ref, EventType.WARNING, "PolicyConflict", "same text")
    sent = events(api)
    assert len(sent) == 3
    assert sent[0]["metadata"]["namespace"] == "default"  # cluster-scoped object
    assert sent[0]["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "node-1"}
    assert sent[0]["source"] == {"component": "colocd", "host": "node-1"}
    suppressed = registry.get_sample_value(
        "colocd_events_recorded_total", {"type": "Warning", "result": "suppressed"}
    )
    assert suppressed == 1


def test_event_failures_are_counted_not_raised(
    api: ApiServer, recorder: EventRecorder, registry: CollectorRegistry
) -> None:
    api.stop()
    ref = ObjectRef("v1", "Pod", "web", "default", "uid-1")
    assert not recorder.record(ref, EventType.NORMAL, "Test", "message")
    failed = registry.get_sample_value(
        "colocd_events_recorded_total", {"type": "Normal", "result": "failed"}
    )
    assert failed == 1
    api.start()
    assert recorder.record(ref, EventType.NORMAL, "Test", "message")  # not remembered as sent
