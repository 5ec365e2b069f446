"""Publishing colocd.io/batch-* on the Node: correct values, and few writes."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from agent.act.node_resources import (
    BatchCapacity,
    NodeResourcePublisher,
    PublishReason,
    PublishSettings,
)
from agent.report.metrics import KubeMetrics
from agent.sources.kube import KubeClient

from .apiserver import ApiServer
from .conftest import FakeClock
from .objects import node

GIB = 1 << 30


@pytest.fixture
def publisher(
    api: ApiServer, client: KubeClient, metrics: KubeMetrics, clock: FakeClock
) -> NodeResourcePublisher:
    api.create(node("node-1"))
    settings = PublishSettings(jitter=0.0)  # 10 %, 60 s, 5 min
    return NodeResourcePublisher(
        client, "node-1", metrics, settings, clock=clock, rng=random.Random(1)
    )


def patches(api: ApiServer) -> int:
    return sum(1 for r in api.requests() if r.method == "PATCH" and r.path.endswith("/status"))


def test_every_write_and_skip_is_counted_from_zero(
    publisher: NodeResourcePublisher, registry: CollectorRegistry
) -> None:
    # Present before the first publish, so an alert on increase() sees the first failure.
    value = registry.get_sample_value
    labels = {"reason": "changed", "result": "failed"}
    assert value("colocd_node_status_writes_total", labels) == 0
    assert value("colocd_node_status_skips_total", {"reason": "too_soon"}) == 0
    assert value("colocd_node_status_writes_total", {"reason": "too_soon", "result": "ok"}) is None


def test_first_publish_writes_capacity_and_allocatable(
    api: ApiServer, publisher: NodeResourcePublisher, registry: CollectorRegistry
) -> None:
    result = publisher.publish(BatchCapacity(2500, 4 * GIB, 150))
    assert result.written and result.reason is PublishReason.FIRST
    status = api.get(node("node-1"))["status"]
    expected = {
        "colocd.io/batch-cpu": "2500",
        "colocd.io/batch-memory": str(4 * GIB),
        "colocd.io/batch-gpu": "150",
    }
    for section in ("capacity", "allocatable"):
        assert {k: status[section][k] for k in expected} == expected
        assert status[section]["cpu"] == "8"  # kubelet's own resources untouched
    assert registry.get_sample_value("colocd_node_published_batch_cpu_cores") == 2.5
    assert registry.get_sample_value("colocd_node_published_batch_gpu_devices") == 1.5


def test_writes_are_throttled_by_threshold_and_intervals(
    api: ApiServer, publisher: NodeResourcePublisher, clock: FakeClock, registry: CollectorRegistry
) -> None:
    base = BatchCapacity(4000, 8 * GIB, 0)
    steps = [
        # (seconds later, capacity, written?, reason)
        (0, base, True, PublishReason.FIRST),
        (1, base, False, PublishReason.UNCHANGED),
        (1, BatchCapacity(4300, 8 * GIB, 0), False, PublishReason.UNCHANGED),  # 7.5 % < 10 %
        (1, BatchCapacity(5000, 8 * GIB, 0), False, PublishReason.TOO_SOON),  # 25 %, 3 s later
        (57, BatchCapacity(5000, 8 * GIB, 0), True, PublishReason.CHANGED),  # 60 s since write
        (30, BatchCapacity(5000, 6 * GIB, 0), False, PublishReason.TOO_SOON),
        (30, BatchCapacity(5000, 6 * GIB, 0), True, PublishReason.CHANGED),
        (100, BatchCapacity(5050, 6 * GIB, 0), False, PublishReason.UNCHANGED),
        (200, BatchCapacity(5050, 6 * GIB, 0), True, PublishReason.REFRESH),  # 5 min since
    ]
    for later, capacity, written, reason in steps:
        clock.advance(later)
        result = publisher.publish(capacity)
        assert (result.written, result.reason) == (written, reason), (later, capacity)
    assert patches(api) == 4
    assert api.get(node("node-1"))["status"]["capacity"]["colocd.io/batch-cpu"] == "5050"
    written = registry.get_sample_value(
        "colocd_node_status_writes_total", {"reason": "changed", "result": "ok"}
    )
    assert written == 2
    assert registry.get_sample_value("colocd_node_status_skips_total", {"reason": "too_soon"}) == 2


def test_tiny_values_need_a_minimum_step(
    publisher: NodeResourcePublisher, clock: FakeClock
) -> None:
    publisher.publish(BatchCapacity(0, 0, 0))
    clock.advance(120)
    # 0 -> 50m is "infinitely" more, but less than the 100m step: not worth a write.
    assert publisher.publish(BatchCapacity(50, 0, 0)).reason is PublishReason.UNCHANGED
    assert publisher.publish(BatchCapacity(200, 0, 0)).reason is PublishReason.CHANGED


def test_a_failed_write_backs_off_and_retries(
    api: ApiServer, publisher: NodeResourcePublisher, clock: FakeClock
) -> None:
    api.fail_next("PATCH", "/api/v1/nodes/node-1/status", 429, "busy", {"Retry-After": "20"})
    failed = publisher.publish(BatchCapacity(1000, GIB, 0))
    assert not failed.written and failed.error and "429 busy" in failed.error
    assert publisher.published is None
    clock.advance(10)
    assert publisher.publish(BatchCapacity(1000, GIB, 0)).reason is PublishReason.BACKOFF
    clock.advance(15)
    retried = publisher.publish(BatchCapacity(1000, GIB, 0))
    assert retried.written and retried.reason is PublishReason.FIRST
    assert patches(api) == 2  # the refused one and the retry; none while backing off


def test_refresh_interval_is_jittered(
    client: KubeClient, metrics: KubeMetrics, api: ApiServer
) -> None:
    api.create(node("node-1"))
    due = []
    for seed in range(5):
        clock = FakeClock()
        pub = NodeResourcePublisher(
            client, "node-1", metrics, PublishSettings(), clock=clock, rng=random.Random(seed)
        )
        pub.publish(BatchCapacity(1000, GIB, 0))
        seconds = 0
        while not pub.publish(BatchCapacity(1000, GIB, 0)).written:
            clock.advance(1)
            seconds += 1
        due.append(seconds)
    assert all(270 <= s <= 330 for s in due)  # 5 min +/- 10 %
    assert len(set(due)) > 1  # nodes do not refresh in step


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_interval_s": 600}, "min interval"),
        ({"jitter": 1.5}, "jitter"),
        ({"change_threshold": -0.1}, "threshold"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PublishSettings(**kwargs)


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu_milli"):
        BatchCapacity(-1, 0, 0)


def test_a_node_without_gpus_has_no_batch_gpu_and_one_that_lost_them_has_it_removed(
    api: ApiServer,
    publisher: NodeResourcePublisher,
    clock: FakeClock,
    registry: CollectorRegistry,
) -> None:
    assert publisher.publish(BatchCapacity(2500, 4 * GIB, None)).written
    status = api.get(node("node-1"))["status"]
    assert "colocd.io/batch-gpu" not in status["capacity"]
    assert "colocd.io/batch-gpu" not in status["allocatable"]
    assert registry.get_sample_value("colocd_node_published_batch_gpu_devices") is None

    clock.advance(61)
    assert publisher.publish(BatchCapacity(2500, 4 * GIB, 150)).written  # a GPU came
    assert api.get(node("node-1"))["status"]["allocatable"]["colocd.io/batch-gpu"] == "150"
    assert registry.get_sample_value("colocd_node_published_batch_gpu_devices") == 1.5

    clock.advance(61)
    result = publisher.publish(BatchCapacity(2500, 4 * GIB, None))  # and went
    assert result.written and result.reason is PublishReason.CHANGED
    status = api.get(node("node-1"))["status"]
    assert "colocd.io/batch-gpu" not in status["capacity"]
    assert "colocd.io/batch-gpu" not in status["allocatable"]
    assert registry.get_sample_value("colocd_node_published_batch_gpu_devices") is None
