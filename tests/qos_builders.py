"""Builders for the brain's tests: pods, nodes and snapshots with readable defaults."""

from __future__ import annotations

from qos.pod import BATCH_CPU, BATCH_MEMORY, Pod
from qos.samples import CpuReading, MemoryReading, PressureReading, Snapshot
from qos.state import NodeCapacity, NodeState
from tests.builders import c

GIB = 1024**3
CAPACITY = NodeCapacity(cpu_milli=8000, memory_bytes=16 * GIB)


def pod(
    name: str,
    *,
    cpu: str | None = None,
    memory: int | None = None,
    guaranteed: bool = False,
    tier: str | None = None,
    batch_cpu: int = 0,
    batch_memory: int = 0,
    priority: int | None = None,
) -> Pod:
    """One single-container pod; `guaranteed` (or batch-* requests) sets limits = requests."""
    requests: dict[str, object] = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    if batch_cpu:
        requests[BATCH_CPU] = batch_cpu
    if batch_memory:
        requests[BATCH_MEMORY] = batch_memory
    limits = dict(requests) if guaranteed or batch_cpu or batch_memory else {}
    return Pod(
        namespace="default",
        name=name,
        uid=f"uid-{name}",
        annotations={"colocd.io/tier": tier} if tier else {},
        priority=priority,
        containers=(c("main", requests, limits),),
    )


def node(*pods: Pod, capacity: NodeCapacity = CAPACITY) -> NodeState:
    return NodeState.build("node-1", capacity, pods)


def snapshot(
    at: float,
    *,
    state: NodeState | None = None,
    online: float | None = 2000.0,
    system: float | None = 500.0,
    batch: float | None = 1000.0,
    psi: float | None = 1.0,
    online_ws: float | None = 4.0 * GIB,
    system_ws: float | None = 1.0 * GIB,
    node_ws: float | None = None,
    memory_psi: float | None = None,
    cpus: tuple[int, ...] = (),
) -> Snapshot:
    return Snapshot(
        node=state or node(),
        cpus=cpus,
        cpu=CpuReading(
            at, system_used_milli=system, online_used_milli=online, batch_used_milli=batch
        ),
        memory=MemoryReading(
            at,
            node_working_set_bytes=node_ws,
            system_working_set_bytes=system_ws,
            online_memory_bytes=online_ws,
        ),
        cpu_pressure=PressureReading(at, some_avg10=psi),
        memory_pressure=None if memory_psi is None else PressureReading(at, memory_psi),
    )
