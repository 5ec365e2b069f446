"""The Kubernetes QoS class, computed exactly as kubelet's `ComputePodQOS` does.

Rules (pkg/apis/core/v1/helper/qos): only cpu and memory count; only positive quantities
count; requests and limits are summed over app and init containers (restartable sidecars
included) or taken from pod-level `spec.resources` when present; Guaranteed needs a cpu and
a memory limit on every container (or the pod) and requests equal to limits; no requests
and no limits at all is BestEffort; anything else is Burstable. A pod whose status already
carries a QoS class keeps it, as `GetPodQOS` does (the class is immutable after admission).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from qos.pod import CPU, MEMORY, Pod, ResourceList

QOS_RESOURCES = (CPU, MEMORY)


class QOSClass(StrEnum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


def _accumulate(into: dict[str, Decimal], resources: ResourceList) -> set[str]:
    """Add the positive cpu/memory quantities; return the names that were positive."""
    found = set()
    for name, quantity in resources.items():
        if name in QOS_RESOURCES and quantity > 0:
            into[name] = into.get(name, Decimal(0)) + quantity
            found.add(name)
    return found


def pod_level_resources_set(pod: Pod) -> bool:
    """Pod-level resources decide only when they name cpu or memory (IsPodLevelResourcesSet)."""
    if pod.pod_resources is None:
        return False
    names = set(pod.pod_resources.requests) | set(pod.pod_resources.limits)
    return bool(names & set(QOS_RESOURCES))


def compute_qos_class(pod: Pod) -> QOSClass:
    """What Kubernetes would compute for this (already defaulted) pod."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    if pod_level_resources_set(pod):
        assert pod.pod_resources is not None
        _accumulate(requests, pod.pod_resources.requests)
        if pod.pod_resources.limits:
            found = _accumulate(limits, pod.pod_resources.limits)
            guaranteed = set(QOS_RESOURCES) <= found
    else:
        for container in pod.all_containers():
            _accumulate(requests, container.resources.requests)
            found = _accumulate(limits, container.resources.limits)
            if not set(QOS_RESOURCES) <= found:
                guaranteed = False
    if not requests and not limits:
        return QOSClass.BEST_EFFORT
    equal = all(limits.get(n) == q for n, q in requests.items())
    if guaranteed and equal and len(requests) == len(limits):
        return QOSClass.GUARANTEED
    return QOSClass.BURSTABLE


def pod_qos_class(pod: Pod) -> QOSClass:
    """`status.qosClass` when the API server reported one, else the computed class."""
    if pod.status_qos_class:
        try:
            return QOSClass(pod.status_qos_class)
        except ValueError:
            pass
    return compute_qos_class(pod)
