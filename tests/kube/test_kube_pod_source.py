"""Pod sources: the API watch (informer) and the manifest directory, behind one face."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agent.config import node_name_from
from agent.errors import ConfigError
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.informer import Informer
from agent.sources.kube import PODS, KubeClient
from agent.sources.pod_source import ApiPodSource, DirPodSource, PodSource
from qos.state import NodeCapacity, NodeState
from qos.tiers import Tier

from .apiserver import ApiServer, wait_for
from .objects import pod


def names(source: PodSource) -> list[str]:
    return [p.name for p in source.snapshot().pods]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def source(client: KubeClient, metrics: KubeMetrics, backoff: Backoff) -> Iterator[ApiPodSource]:
    src = ApiPodSource(client, "node-1", metrics, backoff=backoff)
    try:
        yield src
    finally:
        src.stop()


def test_pods_of_this_node_are_added_updated_and_deleted_via_watch(
    api: ApiServer, source: ApiPodSource, registry: CollectorRegistry
) -> None:
    api.create(pod("web", "node-1"))
    api.create(pod("elsewhere", "node-2"))
    source.start()
    assert source.wait_synced(10)
    assert names(source) == ["web"]
    first = source.snapshot()
    assert first.synced and first.fresh

    api.create(pod("batch", "node-1", cpu=None))
    wait_for(lambda: names(source) == ["batch", "web"])

    api.patch(pod("web"), {"metadata": {"labels": {"app": "web", "version": "2"}}})
    wait_for(lambda: source.snapshot().pods[1].labels.get("version") == "2")

    api.delete(pod("batch"))
    wait_for(lambda: names(source) == ["web"])
    assert source.snapshot().generation > first.generation
    assert sample(registry, "colocd_informer_events_total", resource="pods", type="DELETED") == 1
    assert sample(registry, "colocd_informer_objects", resource="pods") == 1
    # The watch asked only for this node's pods.
    watches = [r for r in api.requests() if r.params.get("watch") == "true"]
    assert watches and all(r.params["fieldSelector"] == "spec.nodeName=node-1" for r in watches)


def test_410_gone_lists_again_and_misses_nothing(
    api: ApiServer, source: ApiPodSource, registry: CollectorRegistry
) -> None:
    api.create(pod("web"))
    source.start()
    assert source.wait_synced(10)
    api.expire_watches()
    wait_for(
        lambda: (
            sample(registry, "colocd_informer_lists_total", resource="pods", reason="expired") == 1
        )
    )
    api.create(pod("after-expiry"))
    wait_for(lambda: names(source) == ["after-expiry", "web"])
    assert sample(registry, "colocd_informer_errors_total", resource="pods", error="gone") >= 1
    lists = [r for r in api.requests() if r.path == "/api/v1/pods" and "watch" not in r.params]
    assert len(lists) == 2  # the initial list and the re-list after 410


def test_api_server_away_serves_cache_then_resyncs(
    api: ApiServer, source: ApiPodSource, registry: CollectorRegistry
) -> None:
    api.create(pod("web"))
    api.create(pod("batch", cpu=None))
    source.start()
    assert source.wait_synced(10)

    api.stop()
    wait_for(lambda: not source.snapshot().fresh)
    away = source.snapshot()
    assert [p.name for p in away.pods] == ["batch", "web"]  # still served from the cache
    assert sample(registry, "colocd_informer_connected", resource="pods") == 0

    # Changes while the clients cannot see them: no watch event will ever tell.
    api.delete_silently(pod("batch"))
    api.create_silently(pod("new"))
    assert names(source) == ["batch", "web"]

    api.start()
    wait_for(lambda: source.snapshot().fresh and names(source) == ["new", "web"])
    assert sample(registry, "colocd_informer_connected", resource="pods") == 1
    assert sample(registry, "colocd_informer_lists_total", resource="pods", reason="reconnect") >= 1
    assert (
        sample(registry, "colocd_informer_errors_total", resource="pods", error="unavailable") >= 1
    )


def test_an_unparseable_pod_is_left_out_and_reported(
    api: ApiServer, source: ApiPodSource, registry: CollectorRegistry
) -> None:
    bad = pod("bad")
    bad["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "lots"}}
    api.create(bad)
    api.create(pod("good"))
    source.start()
    assert source.wait_synced(10)
    snap = source.snapshot()
    assert [p.name for p in snap.pods] == ["good"]
    assert len(snap.problems) == 1
    assert snap.problems[0].startswith("pod default/bad: ")
    assert "invalid quantity 'lots'" in snap.problems[0]
    assert sample(registry, "colocd_informer_parse_errors_total", resource="pods") == 1


def test_stop_ends_an_open_watch_quickly(api: ApiServer, source: ApiPodSource) -> None:
    source.start()
    assert source.wait_synced(10)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        ("from-flag", {"NODE_NAME": "from-env"}, "from-flag"),
        (None, {"NODE_NAME": "from-env"}, "from-env"),
    ],
)
def test_node_name_comes_from_the_flag_or_the_downward_api(
    flag: str | None, environ: dict[str, str], expected: str
) -> None:
    assert node_name_from(flag, environ) == expected


def test_missing_node_name_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="pass --node-name or set NODE_NAME"):
        node_name_from(None, {})


# --- the directory source ------------------------------------------------------------------


def write(path: Path, *docs: dict) -> None:
    path.write_text(yaml.safe_dump_all(docs))


def test_directory_source_rereads_only_on_change(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", pod("web"))
    source = DirPodSource(tmp_path)
    source.start()
    assert source.wait_synced(0)
    first = source.snapshot()
    assert [p.name for p in first.pods] == ["web"] and first.fresh
    assert source.snapshot() is first  # nothing changed: nothing re-read

    write(tmp_path / "batch.yaml", pod("batch", cpu=None))
    second = source.snapshot()
    assert [p.name for p in second.pods] == ["batch", "web"]
    assert second.generation == first.generation + 1

    (tmp_path / "batch.yaml").unlink()
    assert names(source) == ["web"]


def test_directory_source_reports_bad_files_and_keeps_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", pod("web"))
    (tmp_path / "broken.yaml").write_text("kind: Pod\nmetadata: [unclosed\n")
    snap = DirPodSource(tmp_path).snapshot()
    assert [p.name for p in snap.pods] == ["web"]
    assert len(snap.problems) == 1 and "broken.yaml[doc 1]" in snap.problems[0]


def test_directory_source_keeps_last_pods_when_the_directory_vanishes(tmp_path: Path) -> None:
    pods_dir = tmp_path / "pods"
    pods_dir.mkdir()
    write(pods_dir / "web.yaml", pod("web"))
    source = DirPodSource(pods_dir)
    source.start()
    shutil.rmtree(pods_dir)
    snap = source.snapshot()
    assert [p.name for p in snap.pods] == ["web"] and not snap.fresh
    assert "not a readable directory" in snap.problems[0]
    pods_dir.mkdir()
    write(pods_dir / "db.yaml", pod("db"))
    assert names(source) == ["db"] and source.snapshot().fresh


def test_both_sources_give_the_same_pods(
    tmp_path: Path, api: ApiServer, source: ApiPodSource
) -> None:
    manifests = [pod("web"), pod("batch", cpu=None, labels={"team": "ml"})]
    for m in manifests:
        api.create(m)
    write(tmp_path / "pods.yaml", *manifests)
    source.start()
    assert source.wait_synced(10)
    from_api = source.snapshot().pods
    from_dir = DirPodSource(tmp_path).snapshot().pods
    strip = [(p.key, p.labels, p.containers, p.node_name) for p in from_api]
    assert strip == [(p.key, p.labels, p.containers, p.node_name) for p in from_dir]


def test_informer_survives_a_bug_and_lists_again(
    api: ApiServer,
    client: KubeClient,
    metrics: KubeMetrics,
    backoff: Backoff,
    registry: CollectorRegistry,
) -> None:
    api.create(pod("web"))
    calls = []

    def flaky_parse(obj: dict) -> str:
        calls.append(obj["metadata"]["name"])
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return obj["metadata"]["name"]

    informer = Informer(client, PODS, parse=flaky_parse, metrics=metrics, backoff=backoff)
    informer.start()
    try:
        assert informer.wait_synced(10)
        assert dict(informer.snapshot().items) == {"default/web": "web"}
        assert sample(registry, "colocd_informer_errors_total", resource="pods", error="other") == 1
    finally:
        informer.stop()


def test_a_job_pod_that_finishes_stops_counting_as_batch(
    api: ApiServer, source: ApiPodSource
) -> None:
    """A completed Job's pod stays bound to the node with phase Succeeded (or Failed): the
    API source still lists it, and the node model the brain decides from drops it."""

    def batch_job(name: str) -> dict:
        obj = pod(name, cpu=None)
        obj["spec"]["containers"][0]["resources"] = {
            "requests": {"colocd.io/batch-cpu": "2000"},
            "limits": {"colocd.io/batch-cpu": "2000"},
        }
        return obj

    for name in ("job-ok", "job-bad", "job-live"):
        api.create(batch_job(name))
    source.start()
    assert source.wait_synced(10)
    capacity = NodeCapacity(cpu_milli=4000, memory_bytes=8 << 30)

    def batch_demand() -> int:
        state = NodeState.build("node-1", capacity, source.snapshot().pods)
        return sum(p.batch.cpu_milli for p in state.in_tier(Tier.BATCH))

    assert batch_demand() == 6000
    api.patch(batch_job("job-ok"), {"status": {"phase": "Succeeded"}}, "status")
    api.patch(batch_job("job-bad"), {"status": {"phase": "Failed"}}, "status")
    wait_for(lambda: {p.name: p.phase for p in source.snapshot().pods}["job-bad"] == "Failed")
    assert {p.name: p.phase for p in source.snapshot().pods} == {
        "job-bad": "Failed",
        "job-live": "Running",
        "job-ok": "Succeeded",
    }
    assert batch_demand() == 2000
