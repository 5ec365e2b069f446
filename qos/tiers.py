"""Extended QoS tiers and the classifier that puts each pod into one, with a reason.

Order: annotation `colocd.io/tier` → requests for `colocd.io/batch-*` → policy rules (first
match wins) → fallback from the Kubernetes QoS class. `dedicated` is granted only to
Guaranteed pods whose CPUs are whole cores; otherwise the pod is `online` and the reason
says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from qos.errors import TierAnnotationError
from qos.k8s_qos import QOSClass, pod_level_resources_set, pod_qos_class
from qos.pod import BATCH_RESOURCE_PREFIX, CPU, TIER_ANNOTATION, Pod
from qos.selector import LabelSelector


class Tier(StrEnum):
    SYSTEM = "system"
    DEDICATED = "dedicated"
    ONLINE = "online"
    BATCH = "batch"

    @property
    def is_online(self) -> bool:
        """Tiers whose latency colocd protects (everything but batch)."""
        return self is not Tier.BATCH


@dataclass(frozen=True, slots=True)
class TierRule:
    """One policy rule: every condition given must hold (an empty rule matches nothing)."""

    name: str
    tier: Tier
    namespaces: tuple[str, ...] = ()
    min_priority: int | None = None
    max_priority: int | None = None
    selector: LabelSelector | None = None

    def match(self, pod: Pod) -> str | None:
        """Why this rule matches `pod`, or None."""
        why = []
        if self.namespaces:
            if pod.namespace not in self.namespaces:
                return None
            why.append(f"namespace {pod.namespace}")
        if self.min_priority is not None or self.max_priority is not None:
            if pod.priority is None:
                return None
            lo, hi = self.min_priority, self.max_priority
            if (lo is not None and pod.priority < lo) or (hi is not None and pod.priority > hi):
                return None
            if lo is not None and hi is not None:
                why.append(f"priority {pod.priority} in [{lo}, {hi}]")
            else:
                why.append(f"priority {pod.priority} {'>=' if lo is not None else '<='} {lo or hi}")
        if self.selector is not None:
            if not self.selector.matches(pod.labels):
                return None
            why.append(f"labels match {self.selector}")
        return ", ".join(why) or None


# Kubernetes' own system priority classes start at 2,000,000,000.
SYSTEM_PRIORITY = 2_000_000_000
DEFAULT_RULES: tuple[TierRule, ...] = (
    TierRule("system-priority", Tier.SYSTEM, min_priority=SYSTEM_PRIORITY),
    TierRule("system-namespaces", Tier.SYSTEM, namespaces=("kube-system",)),
)


@dataclass(frozen=True, slots=True)
class TierSettings:
    rules: tuple[TierRule, ...] = DEFAULT_RULES
    fallback: tuple[tuple[QOSClass, Tier], ...] = (
        (QOSClass.GUARANTEED, Tier.ONLINE),
        (QOSClass.BURSTABLE, Tier.ONLINE),
        (QOSClass.BEST_EFFORT, Tier.BATCH),
    )


DEFAULT_TIER_SETTINGS = TierSettings()


@dataclass(frozen=True, slots=True)
class TierDecision:
    tier: Tier
    qos_class: QOSClass
    reason: str
    warnings: tuple[str, ...] = field(default=())


def _whole_cores(pod: Pod) -> str | None:
    """None when every CPU request is a whole number of cores, else why not."""
    if pod_level_resources_set(pod):
        assert pod.pod_resources is not None
        cpu = pod.pod_resources.requests.get(CPU, Decimal(0))
        return None if cpu >= 1 and cpu == cpu.to_integral_value() else f"pod cpu {cpu}"
    for c in pod.containers:
        cpu = c.resources.requests.get(CPU, Decimal(0))
        if cpu < 1 or cpu != cpu.to_integral_value():
            return f"container {c.name} requests cpu {cpu}"
    return None


def _grant(tier: Tier, qos: QOSClass, pod: Pod, why: str) -> TierDecision:
    if tier is Tier.DEDICATED:
        if qos is not QOSClass.GUARANTEED:
            why += f"; dedicated needs Guaranteed QoS, pod is {qos}, so online"
            return TierDecision(Tier.ONLINE, qos, why)
        fractional = _whole_cores(pod)
        if fractional:
            why += f"; dedicated needs whole CPUs, {fractional}, so online"
            return TierDecision(Tier.ONLINE, qos, why)
    return TierDecision(tier, qos, why)


def batch_resources(pod: Pod) -> tuple[str, ...]:
    names = {
        name
        for c in pod.all_containers()
        for name in (*c.resources.requests, *c.resources.limits)
        if name.startswith(BATCH_RESOURCE_PREFIX)
    }
    return tuple(sorted(names))


def classify(
    pod: Pod, settings: TierSettings = DEFAULT_TIER_SETTINGS, *, strict: bool = False
) -> TierDecision:
    """Place `pod` in a tier. `strict` raises on an unknown annotation value (the CLI);
    otherwise the pod falls through to the other rules with a warning (the agent)."""
    qos = pod_qos_class(pod)
    warnings: list[str] = []
    value = pod.annotations.get(TIER_ANNOTATION)
    if value is not None:
        try:
            tier = Tier(value.strip().lower())
        except ValueError:
            msg = (
                f"annotation {TIER_ANNOTATION}={value!r} is not one of "
                f"{', '.join(t.value for t in Tier)}"
            )
            if strict:
                raise TierAnnotationError(pod.key, value, msg) from None
            warnings.append(f"{msg}; ignored")
        else:
            d = _grant(tier, qos, pod, f"annotation {TIER_ANNOTATION}={value}")
            return TierDecision(d.tier, qos, d.reason, tuple(warnings))
    batch = batch_resources(pod)
    if batch:
        return TierDecision(Tier.BATCH, qos, f"requests {', '.join(batch)}", tuple(warnings))
    for rule in settings.rules:
        why = rule.match(pod)
        if why:
            d = _grant(rule.tier, qos, pod, f"rule {rule.name!r}: {why}")
            return TierDecision(d.tier, qos, d.reason, tuple(warnings))
    tier = dict(settings.fallback).get(qos, Tier.ONLINE)
    return TierDecision(tier, qos, f"QoS class {qos} defaults to {tier}", tuple(warnings))
