"""The Kubernetes QoS class, case by case (the rules of ComputePodQOS)."""

from __future__ import annotations

import pytest

from agent.sources.pod_manifest import parse_pod
from qos.k8s_qos import QOSClass, compute_qos_class, pod_qos_class
from tests.builders import c, pod, res

G, B, BE = QOSClass.GUARANTEED, QOSClass.BURSTABLE, QOSClass.BEST_EFFORT
FULL = {"cpu": "1", "memory": "1Gi"}

CASES = [
    ("no resources at all", pod(c()), BE),
    ("requests equal limits", pod(c(requests=FULL, limits=FULL)), G),
    ("limits only (after defaulting requests = limits)", "limits-only", G),
    ("cpu 1 equals 1000m", pod(c(requests={"cpu": "1000m", "memory": "1Gi"}, limits=FULL)), G),
    (
        "memory 1Gi equals 1073741824",
        pod(c(requests={"cpu": "1", "memory": "1073741824"}, limits=FULL)),
        G,
    ),
    ("memory 1G is not 1Gi", pod(c(requests={"cpu": "1", "memory": "1G"}, limits=FULL)), B),
    ("request below limit", pod(c(requests={"cpu": "500m", "memory": "1Gi"}, limits=FULL)), B),
    ("only a cpu request", pod(c(requests={"cpu": "100m"})), B),
    ("cpu limit but no memory limit", pod(c(requests={"cpu": "1"}, limits={"cpu": "1"})), B),
    ("zero requests count as unset", pod(c(requests={"cpu": "0", "memory": "0"})), BE),
    ("zero limits count as unset", pod(c(requests={"cpu": "0m"}, limits={"memory": "0"})), BE),
    (
        "extended resources do not count",
        pod(c(requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "1"})),
        BE,
    ),
    (
        "ephemeral-storage does not count",
        pod(c(requests={**FULL, "ephemeral-storage": "1Gi"}, limits=FULL)),
        G,
    ),
    ("one guaranteed and one empty container", pod(c("a", FULL, FULL), c("b")), B),
    ("two guaranteed containers", pod(c("a", FULL, FULL), c("b", FULL, FULL)), G),
    ("init container without limits", pod(c("a", FULL, FULL), init=(c("init"),)), B),
    ("init container guaranteed", pod(c("a", FULL, FULL), init=(c("init", FULL, FULL),)), G),
    (
        "restartable sidecar without limits",
        pod(c("a", FULL, FULL), init=(c("envoy", restart_policy="Always"),)),
        B,
    ),
    (
        "restartable sidecar guaranteed",
        pod(c("a", FULL, FULL), init=(c("envoy", FULL, FULL, restart_policy="Always"),)),
        G,
    ),
    ("only an init container has requests", pod(c("a"), init=(c("i", {"cpu": "1"}),)), B),
    ("pod-level resources guaranteed", pod(c("a"), c("b"), pod_resources=res(FULL, FULL)), G),
    (
        "pod-level requests only",
        pod(c("a", FULL, FULL), pod_resources=res({"cpu": "1", "memory": "1Gi"})),
        B,
    ),
    (
        "pod-level limits missing memory",
        pod(c("a", FULL, FULL), pod_resources=res({"cpu": "1"}, {"cpu": "1"})),
        B,
    ),
    (
        "pod-level with only extended resources is ignored",
        pod(c("a", FULL, FULL), pod_resources=res({"hugepages-2Mi": "2Mi"})),
        G,
    ),
]


@pytest.mark.parametrize(("case", "subject", "expected"), CASES, ids=[x[0] for x in CASES])
def test_compute_qos_class(case, subject, expected):
    if subject == "limits-only":
        subject = parse_pod(
            {
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "a", "resources": {"limits": FULL}}]},
            }
        )
    assert compute_qos_class(subject) is expected


def test_status_qos_class_wins_as_in_get_pod_qos():
    p = pod(c(requests=FULL, limits=FULL), status_qos_class="Burstable")
    assert compute_qos_class(p) is G
    assert pod_qos_class(p) is B


def test_unknown_status_qos_class_is_recomputed():
    assert pod_qos_class(pod(c(), status_qos_class="Platinum")) is BE


def test_pod_level_limits_default_pod_level_requests():
    p = parse_pod(
        {
            "metadata": {"name": "p"},
            "spec": {"resources": {"limits": FULL}, "containers": [{"name": "a"}]},
        }
    )
    assert p.pod_resources is not None
    assert p.pod_resources.requests["cpu"] == 1
    assert compute_qos_class(p) is G
