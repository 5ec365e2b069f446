"""Which policies are in force, keeping the last good of everything (pure, no I/O).

- A policy object whose newest version is invalid stays in force at its last valid version;
  one that was never valid is ignored. Either way the problem is reported.
- A resolution whose merged values are inconsistent is not used: the node keeps its last
  good effective policy (or the built-in defaults if it never had one), and says so
  (`NodePolicy.fallback`).

The last good versions live in memory: an agent that restarts while a policy is invalid
knows only that it is invalid, and ignores it. The CRD's schema and CEL rules make the API
server refuse most invalid objects in the first place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import PolicyError
from agent.policy.model import ColocationPolicy, parse_policy
from agent.policy.resolve import Resolution, resolve


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A ColocationPolicy object as the API server holds it: parsed when valid, otherwise the
    reason it is not. `status` is the raw status (the controller compares against it)."""

    name: str
    uid: str
    generation: int | None
    policy: ColocationPolicy | None
    error: str | None
    status: Mapping[str, Any]


def parse_document(obj: Mapping[str, Any]) -> PolicyDocument:
    """Never fails on a bad spec (that is reported, not dropped); only on a nameless object."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name: missing")
    generation = meta.get("generation")
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    try:
        policy: ColocationPolicy | None = parse_policy(dict(obj), f"ColocationPolicy {name}")
        error = None
    except PolicyError as err:
        policy = None
        error = "; ".join(f"{p}: {m}" if p else m for p, m in err.problems)
    return PolicyDocument(
        name=name,
        uid=str(meta.get("uid", "")),
        generation=generation if isinstance(generation, int) else None,
        policy=policy,
        error=error,
        status=status or {},
    )


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """The resolution in force on a node, and why it might not be the newest one."""

    resolution: Resolution
    fallback: bool  # the newest resolution was inconsistent; this is the last good one
    invalid_objects: tuple[str, ...] = ()  # one line per invalid ColocationPolicy
    merge_problems: tuple[str, ...] = ()  # why the newest resolution was not used

    @property
    def problems(self) -> tuple[str, ...]:
        return self.invalid_objects + self.merge_problems


class PolicyTracker:
    def __init__(self) -> None:
        self._last_good: dict[str, ColocationPolicy] = {}
        self._last_effective: Resolution | None = None

    def in_force(
        self, documents: Mapping[str, PolicyDocument]
    ) -> tuple[dict[str, ColocationPolicy], tuple[str, ...]]:
        """name → the version in force, and one line per invalid object."""
        for gone in set(self._last_good) - set(documents):
            del self._last_good[gone]
        policies: dict[str, ColocationPolicy] = {}
        problems = []
        for name in sorted(documents):
            doc = documents[name]
            if doc.policy is not None:
                self._last_good[name] = doc.policy
                policies[name] = doc.policy
                continue
            kept = self._last_good.get(name)
            if kept is not None:
                policies[name] = kept
                problems.append(
                    f"ColocationPolicy {name} generation {doc.generation} is invalid, keeping "
                    f"generation {kept.metadata.generation}: {doc.error}"
                )
            else:
                problems.append(f"ColocationPolicy {name} is invalid and ignored: {doc.error}")
        return policies, tuple(problems)

    def resolve(
        self, documents: Mapping[str, PolicyDocument], node_name: str, labels: Mapping[str, str]
    ) -> NodePolicy:
        policies, invalid = self.in_force(documents)
        resolution = resolve(policies.values(), node_name, labels)
        if resolution.valid:
            self._last_effective = resolution
            return NodePolicy(resolution, False, invalid)
        merge = tuple(f"node {node_name}: {p}" for p in resolution.problems)
        kept = self._last_effective or resolve((), node_name, labels)
        return NodePolicy(kept, True, invalid, merge)
