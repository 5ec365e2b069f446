"""The node model every decision starts from: pods with their tiers, requests and limits,
and the node's capacity. Built once per tick from the pod source; immutable."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from qos.k8s_qos import QOSClass, pod_level_resources_set
from qos.pod import (
    BATCH_CPU,
    BATCH_GPU,
    BATCH_MEMORY,
    CPU,
    MEMORY,
    Container,
    Pod,
    ResourceList,
    Resources,
)
from qos.tiers import DEFAULT_TIER_SETTINGS, Tier, TierDecision, TierSettings, classify


@dataclass(frozen=True, slots=True)
class Amounts:
    """CPU in millicores, memory in bytes; `None` means "not set" (e.g. no limit)."""

    cpu_milli: int | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class BatchRequests:
    """What a batch pod asks of the reclaimed capacity (`colocd.io/batch-*`)."""

    cpu_milli: int = 0
    memory_bytes: int = 0
    gpu_hundredths: int = 0


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What the node gives to pods. `*_source` says where each figure came from (the Node's
    allocatable, kubepods' own limit, the host's total, configured); budget reasons show it.
    `*_set_aside` is what kubelet already keeps outside that figure (kube-reserved,
    system-reserved and, in the Node's figures, its eviction threshold): the Node's capacity
    less its allocatable, or the host's total less kubepods' limit; 0 where unknown or when
    the figure is the host's total or configured (nothing is then credited to node daemons)."""

    cpu_milli: int
    memory_bytes: int
    gpus: int = 0
    cpu_source: str = ""
    memory_source: str = ""
    cpu_set_aside_milli: int = 0
    memory_set_aside_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PodState:
    pod: Pod
    decision: TierDecision
    requests: Amounts
    limits: Amounts
    batch: BatchRequests

    @property
    def tier(self) -> Tier:
        return self.decision.tier

    @property
    def qos_class(self) -> QOSClass:
        return self.decision.qos_class


def _effective(pod: Pod, pick: Callable[[Resources], ResourceList]) -> dict[str, Decimal]:
    """kubelet's PodRequests/PodLimits: app containers plus sidecars, or the largest init
    phase if that is bigger; pod-level resources win for cpu and memory when set."""

    def amounts(c: Container) -> ResourceList:
        return pick(c.resources)

    total: dict[str, Decimal] = {}
    for c in pod.containers:
        for k, v in amounts(c).items():
            total[k] = total.get(k, Decimal(0)) + v
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for c in pod.init_containers:
        if c.is_sidecar:
            for k, v in amounts(c).items():
                total[k] = total.get(k, Decimal(0)) + v
                sidecars[k] = sidecars.get(k, Decimal(0)) + v
            phase = dict(sidecars)
        else:
            phase = {k: v + sidecars.get(k, Decimal(0)) for k, v in amounts(c).items()}
            for k, v in sidecars.items():
                phase.setdefault(k, v)
        for k, v in phase.items():
            init_peak[k] = max(init_peak.get(k, Decimal(0)), v)
    for k, v in init_peak.items():
        total[k] = max(total.get(k, Decimal(0)), v)
    if pod_level_resources_set(pod):
        assert pod.pod_resources is not None
        level = pick(pod.pod_resources)
        for k in (CPU, MEMORY):
            if k in level:
                total[k] = level[k]
    return total


def _milli(v: Decimal | None) -> int | None:
    return None if v is None else int((v * 1000).to_integral_value(ROUND_CEILING))


def _int(v: Decimal | None) -> int | None:
    return None if v is None else int(v.to_integral_value(ROUND_CEILING))


def _limits_complete(pod: Pod, resource: str) -> bool:
    """A pod-level limit exists only if every app container (or the pod) sets one."""
    if pod_level_resources_set(pod) and pod.pod_resources and resource in pod.pod_resources.limits:
        return True
    return bool(pod.containers) and all(resource in c.resources.limits for c in pod.containers)


def pod_state(pod: Pod, settings: TierSettings = DEFAULT_TIER_SETTINGS) -> PodState:
    decision = classify(pod, settings)
    requests = _effective(pod, lambda r: r.requests)
    limits = _effective(pod, lambda r: r.limits)
    lim = Amounts(
        cpu_milli=_milli(limits.get(CPU)) if _limits_complete(pod, CPU) else None,
        memory_bytes=_int(limits.get(MEMORY)) if _limits_complete(pod, MEMORY) else None,
    )
    req = Amounts(
        cpu_milli=_milli(requests.get(CPU, Decimal(0))),
        memory_bytes=_int(requests.get(MEMORY, Decimal(0))),
    )
    batch = BatchRequests(
        cpu_milli=_int(requests.get(BATCH_CPU, Decimal(0))) or 0,
        memory_bytes=_int(requests.get(BATCH_MEMORY, Decimal(0))) or 0,
        gpu_hundredths=_int(requests.get(BATCH_GPU, Decimal(0))) or 0,
    )
    return PodState(pod, decision, req, lim, batch)


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    capacity: NodeCapacity
    pods: tuple[PodState, ...] = ()

    @classmethod
    def build(
        cls,
        name: str,
        capacity: NodeCapacity,
        pods: Iterable[Pod],
        settings: TierSettings = DEFAULT_TIER_SETTINGS,
    ) -> NodeState:
        """The node's live pods: finished ones (Succeeded, Failed) count for nothing, not
        as demand, not as cgroups to look for, not for exclusive CPUs."""
        live = (pod_state(p, settings) for p in pods if not p.finished)
        states = tuple(sorted(live, key=lambda s: s.pod.key))
        return cls(name, capacity, states)

    def in_tier(self, *tiers: Tier) -> tuple[PodState, ...]:
        return tuple(p for p in self.pods if p.tier in tiers)

    def requested(self, *tiers: Tier) -> Amounts:
        """Sum of cpu/memory requests of the pods in `tiers`."""
        pods = self.in_tier(*tiers)
        return Amounts(
            cpu_milli=sum(p.requests.cpu_milli or 0 for p in pods),
            memory_bytes=sum(p.requests.memory_bytes or 0 for p in pods),
        )
