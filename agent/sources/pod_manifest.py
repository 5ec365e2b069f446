"""Pod manifests (from files or the API server) → `qos.Pod`, with the API server's defaulting.

The pydantic models below read only the fields colocd uses and ignore the rest, so any real
Pod is accepted; what they do read is validated, and a bad value fails with a one-line
message that names the field.
"""

from __future__ import annotations

import re
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from agent.sources.quantity import check_bound, parse_quantity
from qos.pod import (
    CPU,
    MEMORY,
    Container,
    ContainerRuntimeID,
    Pod,
    Resources,
)
from qos.strict_numbers import StrictNumbers

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _quantity(value: Any) -> Decimal:
    q = parse_quantity(value)
    if q < 0:
        raise ValueError(f"negative quantity {value!r}")
    return q


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label")
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a DNS-1123 subdomain")
    return value


Quantity = Annotated[Decimal, BeforeValidator(_quantity)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]


class _Model(StrictNumbers):
    model_config = ConfigDict(
        extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ResourceRequirements(_Model):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _bounded(cls, amounts: dict[str, Decimal]) -> dict[str, Decimal]:
        for name, q in amounts.items():
            check_bound(name, q)
        return amounts

    def defaulted(self, names: tuple[str, ...] | None = None) -> Resources:
        """API server defaulting: a missing request defaults to its limit."""
        requests = dict(self.requests)
        for name, limit in self.limits.items():
            if name not in requests and (names is None or name in names):
                requests[name] = limit
        return Resources(requests=requests, limits=dict(self.limits))


class ContainerSpec(_Model):
    name: DnsLabel
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    restart_policy: str | None = None


class PodSpec(_Model):
    containers: list[ContainerSpec] = Field(min_length=1)
    init_containers: list[ContainerSpec] = Field(default_factory=list)
    priority: int | None = None
    priority_class_name: str = ""
    node_name: str = ""
    resources: ResourceRequirements | None = None
    host_network: bool = False


class ObjectMeta(_Model):
    name: DnsSubdomain
    namespace: DnsLabel = "default"
    uid: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ContainerStatus(_Model):
    name: str
    container_id: str | None = Field(default=None, alias="containerID")


def _pod_ip(value: Any) -> IPv4Address | IPv6Address:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address")
    return ip_address(value)  # ValueError names the value


class PodIP(_Model):
    ip: Annotated[IPv4Address | IPv6Address, BeforeValidator(_pod_ip)]


class PodStatus(_Model):
    qos_class: str | None = None
    pod_ips: list[PodIP] = Field(default_factory=list, alias="podIPs")
    phase: str = ""
    container_statuses: list[ContainerStatus] = Field(default_factory=list)
    init_container_statuses: list[ContainerStatus] = Field(default_factory=list)


class PodManifest(_Model):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus = Field(default_factory=PodStatus)

    def to_pod(self) -> Pod:
        def container(c: ContainerSpec) -> Container:
            return Container(c.name, c.resources.defaulted(), c.restart_policy)

        ids = {}
        for s in (*self.status.container_statuses, *self.status.init_container_statuses):
            if s.container_id and "://" in s.container_id:
                runtime, _, cid = s.container_id.partition("://")
                ids[s.name] = ContainerRuntimeID(runtime, cid)
        spec = self.spec
        return Pod(
            namespace=self.metadata.namespace,
            name=self.metadata.name,
            uid=self.metadata.uid,
            labels=dict(self.metadata.labels),
            annotations=dict(self.metadata.annotations),
            priority=spec.priority,
            priority_class_name=spec.priority_class_name,
            node_name=spec.node_name,
            containers=tuple(container(c) for c in spec.containers),
            init_containers=tuple(container(c) for c in spec.init_containers),
            pod_resources=spec.resources.defaulted((CPU, MEMORY)) if spec.resources else None,
            status_qos_class=self.status.qos_class,
            container_ids=ids,
            phase=self.status.phase,
            # A host-network pod reports the node's addresses: they are not the pod's own.
            ips=()
            if spec.host_network
            else tuple(dict.fromkeys(i.ip for i in self.status.pod_ips)),
            host_network=spec.host_network,
        )


def describe_validation_error(err: ValidationError) -> str:
    """The first problem as `field.path: message`, plus how many more there are."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<document>"
    msg = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}"


def parse_pod(body: dict[str, Any]) -> Pod:
    """A `qos.Pod` from a Pod object; raises ValueError with a one-line reason."""
    try:
        return PodManifest.model_validate(body).to_pod()
    except ValidationError as err:
        raise ValueError(describe_validation_error(err)) from None
