"""Schema-valid objects for the API server double."""

from __future__ import annotations

from typing import Any


def pod(
    name: str,
    node: str = "node-1",
    namespace: str = "default",
    *,
    cpu: str | None = "100m",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "main", "image": "registry.k8s.io/pause:3.9", "resources": resources}
            ],
        },
        "status": {"phase": "Running"},
    }


def node(
    name: str, labels: dict[str, str] | None = None, cpu: str = "8", memory: str = "32Gi"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
        },
    }


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "colocd.io/v1alpha1",
        "kind": "ColocationPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def pool(name: str, priority: int, labels: dict[str, str], **settings: Any) -> dict[str, Any]:
    spec = {"scope": "NodePool", "priority": priority, "nodeSelector": {"matchLabels": labels}}
    return policy(name, {**spec, **settings})
