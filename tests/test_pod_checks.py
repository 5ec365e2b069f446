"""vet(): pods that repeat another's UID are left out, one warning each, one pod kept."""

from __future__ import annotations

from agent.sources.pod_checks import DUPLICATE_UID, vet
from qos.state import NodeCapacity, NodeState
from tests.builders import c, pod


def _vet(*pods):
    return vet(NodeState.build("n", NodeCapacity(4000, 2**33), list(pods)))


def test_two_identical_manifests_keep_one_pod() -> None:
    twin = pod(c(), name="a", uid="u1")
    node, warnings = _vet(twin, twin)
    assert [p.pod.key for p in node.pods] == [twin.key]
    assert [w.reason for w in warnings] == [DUPLICATE_UID]


def test_a_repeated_uid_keeps_the_more_protected_pod() -> None:
    online = pod(c(requests={"cpu": "1"}, limits={"cpu": "1"}), name="web", uid="u1")
    batch = pod(c(), name="job", uid="u1", annotations={"colocd.io/tier": "batch"})
    node, warnings = _vet(batch, online)
    assert [p.pod.key for p in node.pods] == [online.key]
    assert [w.pod.key for w in warnings] == [batch.key]
