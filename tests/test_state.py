"""NodeState: effective pod requests and limits as kubelet computes them."""

from __future__ import annotations

from qos.state import NodeCapacity, NodeState, pod_state
from qos.tiers import Tier
from tests.builders import c, pod, res

ONE = {"cpu": "1", "memory": "1Gi"}


def test_requests_sum_app_containers():
    s = pod_state(pod(c("a", {"cpu": "250m", "memory": "64Mi"}), c("b", {"cpu": "750m"})))
    assert s.requests.cpu_milli == 1000
    assert s.requests.memory_bytes == 64 << 20
    assert s.limits.cpu_milli is None


def test_init_container_peak_dominates_when_larger():
    s = pod_state(pod(c("a", {"cpu": "100m"}), init=(c("init", {"cpu": "2"}),)))
    assert s.requests.cpu_milli == 2000


def test_sidecars_add_to_app_containers_and_to_later_init_phases():
    sidecar = c("envoy", {"cpu": "500m"}, restart_policy="Always")
    s = pod_state(pod(c("a", {"cpu": "1"}), init=(sidecar, c("late-init", {"cpu": "1200m"}))))
    # running: 1 + 0.5; the late init phase: 1.2 + 0.5 sidecar
    assert s.requests.cpu_milli == 1700


def test_pod_level_resources_win_for_cpu_and_memory():
    s = pod_state(pod(c("a", ONE), pod_resources=res({"cpu": "3"}, {"cpu": "3"})))
    assert s.requests.cpu_milli == 3000
    assert s.requests.memory_bytes == 1 << 30
    assert s.limits.cpu_milli == 3000


def test_limit_exists_only_when_every_container_sets_it():
    s = pod_state(pod(c("a", limits=ONE), c("b", limits={"cpu": "1"})))
    assert s.limits.cpu_milli == 2000
    assert s.limits.memory_bytes is None


def test_batch_extended_resources_are_read():
    req = {"colocd.io/batch-cpu": "1500", "colocd.io/batch-memory": "2Gi"}
    s = pod_state(pod(c("a", req, req)))
    assert s.tier is Tier.BATCH
    assert (s.batch.cpu_milli, s.batch.memory_bytes) == (1500, 2 << 30)


def test_node_state_groups_by_tier():
    state = NodeState.build(
        "node-1",
        NodeCapacity(cpu_milli=4000, memory_bytes=16 << 30),
        [
            pod(c("a", ONE), name="web"),
            pod(c(), name="job"),
            pod(c(), name="dns", namespace="kube-system"),
        ],
    )
    assert [p.pod.name for p in state.in_tier(Tier.BATCH)] == ["job"]
    assert state.requested(Tier.ONLINE).cpu_milli == 1000
    assert state.requested(Tier.SYSTEM, Tier.BATCH).cpu_milli == 0
