"""The Node objects colocd reads: this node's labels and capacity, or every node's labels.

`NodeWatcher` watches this one node (`fieldSelector=metadata.name=<node>`) so the agent
knows which NodePool policies select it and how much of the node kubelet gives to pods
(`status.allocatable`: capacity less kube-reserved, system-reserved and the eviction
threshold), which is the capacity the brain plans with on Kubernetes, and what
`status.capacity` holds beyond it, which kubelet already keeps outside it. The policy
controller watches every node but parses labels only (`parse_node_labels`), so the constant
churn of node status does not count as a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from agent.sources.informer import InformerBacked
from agent.sources.kube import NODES
from agent.sources.quantity import parse_quantity
from qos.pod import CPU, MEMORY
from qos.state import NodeCapacity

GPU_RESOURCE = "nvidia.com/gpu"
ALLOCATABLE = "Node allocatable"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # `status.allocatable` (cpu, memory, GPUs); None when not reported yet.
    allocatable: NodeCapacity | None = None


def _meta(obj: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name: missing")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError("metadata.labels: expected a map")
    return name, {str(k): str(v) for k, v in labels.items()}


def parse_node_labels(obj: Mapping[str, Any]) -> NodeInfo:
    name, labels = _meta(obj)
    return NodeInfo(name, labels)


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_FLOOR))


def _set_aside(capacity: object, resource: str, allocatable: Decimal, scale: int) -> int:
    """`status.capacity` less `status.allocatable` of `resource`, in base units x `scale`:
    what kubelet keeps outside allocatable. 0 (nothing credited to node daemons, as before
    kubelet's reservation was known) when the capacity is missing, unreadable or below the
    allocatable: a bad capacity must not cost the Node its allocatable and labels."""
    if not isinstance(capacity, Mapping) or resource not in capacity:
        return 0
    try:
        total = parse_quantity(capacity[resource], resource) * scale
    except ValueError:
        return 0
    return max(0, _floor(total - allocatable))


def parse_node(obj: Mapping[str, Any]) -> NodeInfo:
    """Name, labels and `status.allocatable` (cpu, memory, nvidia.com/gpu), with what
    `status.capacity` holds beyond it (kube-reserved, system-reserved, eviction threshold)."""
    name, labels = _meta(obj)
    status = obj.get("status") or {}
    allocatable = status.get("allocatable") or {}
    if "cpu" not in allocatable or "memory" not in allocatable:
        return NodeInfo(name, labels)
    cpu = parse_quantity(allocatable["cpu"], CPU) * 1000
    memory = parse_quantity(allocatable["memory"], MEMORY)
    gpus = parse_quantity(allocatable.get(GPU_RESOURCE, 0))
    capacity = status.get("capacity")
    return NodeInfo(
        name,
        labels,
        NodeCapacity(
            cpu_milli=_floor(cpu),
            memory_bytes=_floor(memory),
            gpus=_floor(gpus),
            cpu_source=ALLOCATABLE,
            memory_source=ALLOCATABLE,
            cpu_set_aside_milli=_set_aside(capacity, CPU, cpu, 1000),
            memory_set_aside_bytes=_set_aside(capacity, MEMORY, memory, 1),
        ),
    )


class NodeWatcher(InformerBacked[NodeInfo]):
    """This node's object, kept current by an informer."""

    resource = NODES
    selector = "metadata.name={node}"
    parse = staticmethod(parse_node)

    def info(self) -> NodeInfo | None:
        """The last known state of this node (None until it was seen)."""
        return self._informer.snapshot().items.get(self.node_name)

    @property
    def generation(self) -> int:
        return self._informer.snapshot().generation
