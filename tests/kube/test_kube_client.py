"""agent.sources.kube: the real client over HTTP, and its errors translated into our own tree."""

from __future__ import annotations

import socket

import pytest

from agent.errors import (
    APIConflict,
    APIForbidden,
    APIGone,
    APIInvalid,
    APINotFound,
    APIUnavailable,
    KubeError,
    TooManyRequests,
)
from agent.sources.kube import MAX_REASON, NODES, PODS, POLICIES, KubeClient

from .apiserver import ApiServer
from .objects import node, pod


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, APIInvalid),
        (401, APIForbidden),
        (403, APIForbidden),
        (404, APINotFound),
        (409, APIConflict),
        (410, APIGone),
        (422, APIInvalid),
        (429, TooManyRequests),
        (418, KubeError),
        (500, APIUnavailable),
        (503, APIUnavailable),
    ],
)
def test_http_status_becomes_its_own_error_class(
    api: ApiServer, client: KubeClient, status: int, error: type[KubeError]
) -> None:
    api.fail_next("GET", "/api/v1/nodes", status, "no")
    with pytest.raises(error) as caught:
        client.list(NODES)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert str(caught.value) == f"list nodes: {status} no"
    assert caught.value.__cause__ is not None  # chained from the client's exception


def test_retry_after_is_read_from_429(api: ApiServer, client: KubeClient) -> None:
    api.fail_next("PATCH", "/api/v1/nodes/node-1/status", 429, "slow down", {"Retry-After": "7"})
    with pytest.raises(TooManyRequests) as caught:
        client.patch_node_status("node-1", {"status": {}})
    assert caught.value.retry_after_s == 7.0
    assert str(caught.value) == "patch status of node node-1: 429 slow down"


def test_server_message_is_cut_short(api: ApiServer, client: KubeClient) -> None:
    api.fail_next("GET", "/api/v1/nodes", 500, "x" * 5000)
    with pytest.raises(APIUnavailable) as caught:
        client.list(NODES)
    assert len(caught.value.reason) <= MAX_REASON
    assert caught.value.reason.endswith("…")


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = KubeClient.for_url(f"http://127.0.0.1:{port}")
    with pytest.raises(APIUnavailable) as caught:
        client.list(PODS, field_selector="spec.nodeName=n")
    assert caught.value.status is None
    assert "unreachable" in str(caught.value)
    assert str(caught.value).startswith("list pods (spec.nodeName=n): ")


def test_list_returns_raw_dicts_with_resource_version(api: ApiServer, client: KubeClient) -> None:
    api.create(pod("web", "node-1"))
    api.create(pod("db", "node-2"))
    listing = client.list(PODS, field_selector="spec.nodeName=node-1")
    assert [p["metadata"]["name"] for p in listing.items] == ["web"]
    assert listing.items[0]["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "100m"}}
    assert int(listing.resource_version) >= 2


def test_patch_node_status_is_a_merge_patch(api: ApiServer, client: KubeClient) -> None:
    api.create(node("node-1"))
    client.patch_node_status("node-1", {"status": {"capacity": {"colocd.io/batch-cpu": "1500"}}})
    stored = api.get(node("node-1"))
    assert stored is not None
    assert stored["status"]["capacity"]["colocd.io/batch-cpu"] == "1500"
    assert stored["status"]["capacity"]["cpu"] == "8"  # merged, not replaced
    patch = [r for r in api.requests() if r.method == "PATCH"][-1]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"


def test_missing_object_is_not_found(client: KubeClient) -> None:
    with pytest.raises(APINotFound):
        client.patch_policy_status("nothing-here", {"status": {"matchedNodes": 1}})


def test_metadata_only_listing_asks_for_partial_objects(api: ApiServer, client: KubeClient) -> None:
    api.create(node("node-1"))
    client.list(NODES, metadata_only=True)
    accept = [r for r in api.requests() if r.path == "/api/v1/nodes"][-1].headers["Accept"]
    assert accept.startswith("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")


def test_watch_of_custom_objects_streams_events(api: ApiServer, client: KubeClient) -> None:
    listing = client.list(POLICIES)
    stream = client.watch(POLICIES, resource_version=listing.resource_version, timeout_s=2)
    api.create(
        {
            "apiVersion": "colocd.io/v1alpha1",
            "kind": "ColocationPolicy",
            "metadata": {"name": "p"},
            "spec": {"scope": "Cluster"},
        }
    )
    events = []
    with stream:
        for event in stream:
            events.append((event.type, event.object["metadata"]["name"]))
            break
    assert events == [("ADDED", "p")]


def test_watch_from_a_compacted_version_is_gone(api: ApiServer, client: KubeClient) -> None:
    api.create(pod("web"))
    old = client.list(PODS).resource_version
    api.expire_watches()
    with pytest.raises(APIGone), client.watch(PODS, resource_version=old, timeout_s=5) as stream:
        list(stream)
