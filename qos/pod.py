"""Typed pod model: what `qos/` needs of a Kubernetes Pod, quantities already parsed.

Quantities are `Decimal` in base units (cores, bytes) so `1` and `1000m` compare equal, as
Kubernetes' `resource.Quantity.Cmp` does. Parsing from manifests or the API happens in
`agent/`; this module never sees text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address

CPU = "cpu"
MEMORY = "memory"
BATCH_RESOURCE_PREFIX = "colocd.io/batch-"
BATCH_CPU = "colocd.io/batch-cpu"
BATCH_MEMORY = "colocd.io/batch-memory"
BATCH_GPU = "colocd.io/batch-gpu"
TIER_ANNOTATION = "colocd.io/tier"
# Pod phases after which no container runs again: such a pod holds no CPU, memory or cgroup
# worth acting on (a completed Job's pod stays bound to the node until it is deleted).
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})

ResourceList = Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class Resources:
    requests: ResourceList = field(default_factory=dict)
    limits: ResourceList = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    resources: Resources = field(default_factory=Resources)
    # Only init containers: "Always" makes it a restartable sidecar.
    restart_policy: str | None = None

    @property
    def is_sidecar(self) -> bool:
        return self.restart_policy == "Always"


@dataclass(frozen=True, slots=True)
class ContainerRuntimeID:
    """A container's id from `status.containerStatuses[].containerID` (`runtime://id`)."""

    runtime: str
    id: str


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    priority: int | None = None
    priority_class_name: str = ""
    node_name: str = ""
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    # Pod-level `spec.resources` (KEP-2837); None when absent.
    pod_resources: Resources | None = None
    # `status.qosClass` as reported by the API server; Kubernetes treats it as authoritative.
    status_qos_class: str | None = None
    container_ids: Mapping[str, ContainerRuntimeID] = field(default_factory=dict)
    phase: str = ""
    # `status.podIPs` (IPv4 and IPv6); empty for host-network pods, whose traffic carries the
    # node's own address and cannot be told apart by IP.
    ips: tuple[IPv4Address | IPv6Address, ...] = ()
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    def all_containers(self) -> tuple[Container, ...]:
        return self.containers + self.init_containers
