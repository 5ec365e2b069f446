"""Pods the agent plans with, vetted: `colocd classify` and `discover` refuse a pod whose
UID another pod has or whose colocd.io/tier annotation is junk, but the running agent must
keep going, so it plans without the fault and says so (log, Event, status file).

- A UID seen twice: both pods would be one cgroup, planned twice. The agent keeps the pod
  in the most protected tier (system, dedicated, online, then batch; ties by name), so a
  copy-pasted batch manifest can never throttle the online pod whose cgroup it names.
- A tier annotation that is not a tier: ignored, the pod takes the tier the other rules
  give (requests for colocd.io/batch-*, the policy's rules, then its QoS class).
"""

from __future__ import annotations

from dataclasses import dataclass

from qos.pod import Pod
from qos.state import NodeState, PodState
from qos.tiers import Tier

__all__ = ["DUPLICATE_UID", "INVALID_TIER", "PodWarning", "vet"]

DUPLICATE_UID = "DuplicateUID"
INVALID_TIER = "InvalidTierAnnotation"
_PROTECTION = (Tier.SYSTEM, Tier.DEDICATED, Tier.ONLINE, Tier.BATCH)


@dataclass(frozen=True, slots=True)
class PodWarning:
    pod: Pod
    reason: str  # the Event's reason: DUPLICATE_UID or INVALID_TIER
    message: str

    def __str__(self) -> str:
        return f"pod {self.pod.key}: {self.message}"


def vet(node: NodeState) -> tuple[NodeState, tuple[PodWarning, ...]]:
    """`node` without the pods that repeat another's UID, and a warning per fault found."""
    warnings: list[PodWarning] = []
    by_uid: dict[str, list[PodState]] = {}
    for state in node.pods:
        warnings += (
            PodWarning(
                state.pod, INVALID_TIER, f"{why}; tier {state.tier} ({state.decision.reason})"
            )
            for why in state.decision.warnings
        )
        if state.pod.uid:
            by_uid.setdefault(state.pod.uid, []).append(state)
    dropped: set[int] = set()  # by identity: two manifests may even repeat the same name
    for uid, states in by_uid.items():
        if len(states) < 2:
            continue
        kept = min(states, key=lambda s: (_PROTECTION.index(s.tier), s.pod.key))
        for s in states:
            if s is not kept:
                dropped.add(id(s))
                warnings.append(
                    PodWarning(
                        s.pod,
                        DUPLICATE_UID,
                        f"UID {uid} is also pod {kept.pod.key}'s ({kept.tier}); left out of "
                        f"the plan, {kept.pod.key} keeps the cgroup",
                    )
                )
    if dropped:
        node = NodeState(
            node.name, node.capacity, tuple(p for p in node.pods if id(p) not in dropped)
        )
    return node, tuple(warnings)
