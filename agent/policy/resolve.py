"""Resolve the effective policy of one node, field by field, with provenance.

Order, weakest first: built-in defaults < Cluster < NodePool (by priority, low to high) <
Node. A stronger layer's value replaces a weaker one for each field it sets (see
`agent.policy.model` for what counts as one field). Policies of equal rank (same layer and
priority) are applied in reverse name order, so the name that sorts first wins; whenever
such policies set one field to different values, the decision is reported as a `Tie`.

Workload overrides are collected from every applying policy, strongest first; for a pod the
first match wins.

A resolution whose combined values are inconsistent (e.g. traffic classes that add up to
more than the link) carries `problems` naming the fields and the policies that set them;
callers keep the last good resolution instead (`agent.policy.tracker`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any, get_args

from pydantic import ValidationError

from agent.act.node_resources import PublishSettings
from agent.policy.defaults import BUILTIN
from agent.policy.model import (
    ColocationPolicy,
    ColocationPolicySpec,
    NetworkSpec,
    PolicySettings,
    Section,
    WorkloadOverride,
    problems,
)
from agent.policy.network import to_network_settings
from agent.policy.to_settings import to_publish_settings, to_qos_settings
from agent.sources.units import parse_bitrate, parse_duration
from qos.network import NetworkSettings
from qos.settings import QosSettings


class Layer(IntEnum):
    BUILTIN = 0
    CLUSTER = 1
    NODE_POOL = 2
    NODE = 3

    @property
    def label(self) -> str:
        return ("built-in", "Cluster", "NodePool", "Node")[self]


_LAYER_OF_SCOPE = {"Cluster": Layer.CLUSTER, "NodePool": Layer.NODE_POOL, "Node": Layer.NODE}


@dataclass(frozen=True, slots=True)
class Source:
    """Which policy (and layer) set a value."""

    layer: Layer
    policy: str
    priority: int = 0

    @classmethod
    def of(cls, policy: ColocationPolicy) -> Source:
        spec = policy.spec
        return cls(_LAYER_OF_SCOPE[spec.scope], policy.name, spec.priority or 0)

    def __str__(self) -> str:
        if self.layer is Layer.BUILTIN:
            return "built-in defaults"
        if self.layer is Layer.NODE_POOL:
            return f"NodePool {self.policy} (priority {self.priority})"
        return f"{self.layer.label} {self.policy}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer.label, "policy": self.policy}
        if self.layer is Layer.NODE_POOL:
            out["priority"] = self.priority
        return out


BUILTIN_SOURCE = Source(Layer.BUILTIN, "built-in")


@dataclass(frozen=True, slots=True)
class Tie:
    """Policies of equal rank set `field` differently; `winner` won by name order."""

    field: str
    winner: Source
    losers: tuple[Source, ...]

    def __str__(self) -> str:
        others = ", ".join(str(s) for s in self.losers)
        return f"{self.field}: {self.winner} wins over {others} (equal rank, first name wins)"


@dataclass(frozen=True, slots=True)
class Workload:
    override: WorkloadOverride
    source: Source


@dataclass(frozen=True, slots=True)
class Resolution:
    node: str
    labels: Mapping[str, str]
    settings: PolicySettings
    provenance: Mapping[str, Source]
    applied: tuple[Source, ...] = ()  # weakest first
    workloads: tuple[Workload, ...] = ()  # strongest first
    ties: tuple[Tie, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.problems

    def qos_settings(self) -> QosSettings:
        """The brain's settings (workload overrides first among the tier rules)."""
        return to_qos_settings(self.settings, (w.override for w in self.workloads))

    def network_settings(self) -> NetworkSettings:
        """Uplink shaping (`network`)."""
        return to_network_settings(self.settings.network or NetworkSpec())

    def publish_settings(self) -> PublishSettings:
        """The node publisher's settings (`nodeResources`)."""
        return to_publish_settings(self.settings)


# --- the field tree ------------------------------------------------------------------------


def _section_type(annotation: Any) -> type[Section] | None:
    for arg in get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, Section):
            return arg
    return None


def field_paths(model: type[Section] = PolicySettings, prefix: str = "") -> Iterator[str]:
    """Every mergeable field of `model`, as dotted camelCase paths."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        sub = _section_type(info.annotation)
        if sub is not None and not sub.atomic:
            yield from field_paths(sub, path + ".")
        else:
            yield path


def leaves(model: Section, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every field `model` sets."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        path = f"{prefix}{info.alias or name}"
        if isinstance(value, Section) and not value.atomic:
            yield from leaves(value, path + ".")
        else:
            yield path, value


def build(values: Mapping[str, Any]) -> PolicySettings:
    tree: dict[str, Any] = {}
    for path, value in values.items():
        *parents, last = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return PolicySettings.model_validate(tree)


# --- resolution ------------------------------------------------------------------------------


def applies(spec: ColocationPolicySpec, node_name: str, labels: Mapping[str, str]) -> bool:
    if spec.scope == "Cluster":
        return True
    if spec.scope == "NodePool":
        assert spec.node_selector is not None
        return spec.node_selector.selector.matches(labels)
    return node_name in (spec.node_names or ())


def order(policies: Iterable[ColocationPolicy]) -> list[ColocationPolicy]:
    """Weakest first; at equal rank the first name comes last, so it wins."""
    ranked = sorted(policies, key=lambda p: p.name, reverse=True)
    return sorted(ranked, key=lambda p: (Source.of(p).layer, Source.of(p).priority))


def resolve(
    policies: Iterable[ColocationPolicy],
    node_name: str,
    labels: Mapping[str, str],
    builtin: PolicySettings = BUILTIN,
) -> Resolution:
    applying = order(p for p in policies if applies(p.spec, node_name, labels))
    values = dict(leaves(builtin))
    provenance = dict.fromkeys(values, BUILTIN_SOURCE)
    setters: dict[str, list[tuple[Source, Any]]] = {}
    for policy in applying:
        source = Source.of(policy)
        for path, value in leaves(policy.spec.settings()):
            values[path] = value
            provenance[path] = source
            setters.setdefault(path, []).append((source, value))
    ties = []
    for path, entries in setters.items():
        winner, value = entries[-1]
        losers = tuple(
            s
            for s, v in entries[:-1]
            if (s.layer, s.priority) == (winner.layer, winner.priority) and v != value
        )
        if losers:
            ties.append(Tie(path, winner, losers))
    settings = build(values)
    workloads = tuple(
        Workload(w, Source.of(p)) for p in reversed(applying) for w in p.spec.workloads or ()
    )
    return Resolution(
        node=node_name,
        labels=MappingProxyType(dict(labels)),
        settings=settings,
        provenance=MappingProxyType(provenance),
        applied=tuple(Source.of(p) for p in applying),
        workloads=workloads,
        ties=tuple(ties),
        problems=check_effective(settings, provenance),
    )


# --- consistency of the merged result ----------------------------------------------------------


# (lower, upper, strictly below?, how to compare): pairs of fields layers may set apart.
_ORDERED: tuple[tuple[str, str, bool, Callable[[Any], float]], ...] = (
    ("isolation.memory.onlineMinPercent", "isolation.memory.onlineLowPercent", False, float),
    ("eviction.memoryPressureHysteresisPercent", "eviction.memoryPressurePercent", True, float),
    ("eviction.memoryUsageHysteresisPercent", "eviction.memoryUsagePercent", True, float),
    ("nodeResources.minInterval", "nodeResources.maxInterval", False, parse_duration),
)


def check_effective(settings: PolicySettings, provenance: Mapping[str, Source]) -> tuple[str, ...]:
    """Rules that span fields different layers may set; one line per broken rule, naming the
    policies that set the fields. `settings` is complete, as `resolve` makes it."""

    def cite(*paths: str) -> str:
        return "; ".join(f"{p} from {provenance[p]}" for p in paths)

    values = dict(leaves(settings))
    found = []
    for low, high, strict, key in _ORDERED:
        lv, hv = values[low], values[high]
        if key(lv) > key(hv) or (strict and key(lv) == key(hv)):
            relation = "below" if strict else "at most"
            found.append(f"{low} {lv} must be {relation} {high} {hv} ({cite(low, high)})")
    bounds, initial = settings.margin.bounds_percent, settings.margin.initial_percent
    if not bounds.min <= initial <= bounds.max:
        where = cite("margin.initialPercent", "margin.boundsPercent")
        found.append(
            f"margin.initialPercent {initial} is outside margin.boundsPercent "
            f"[{bounds.min}, {bounds.max}] ({where})"
        )
    net = settings.network
    link = parse_bitrate(net.link_rate)
    classes = {"system": net.tiers.system, "online": net.tiers.online, "batch": net.tiers.batch}
    total = sum(parse_bitrate(c.rate) for c in classes.values() if c is not None)
    if total > link:
        paths = ["network.linkRate", *(f"network.tiers.{t}" for t in classes)]
        found.append(
            f"network: tier rates add up to {total // 1_000_000}Mbit, above linkRate "
            f"{net.link_rate} ({cite(*paths)})"
        )
    for tier, shaping in classes.items():
        if shaping is not None and shaping.ceil is not None and parse_bitrate(shaping.ceil) > link:
            found.append(
                f"network.tiers.{tier}: ceil {shaping.ceil} is above linkRate {net.link_rate} "
                f"({cite('network.linkRate', f'network.tiers.{tier}')})"
            )
    if not found:  # the last word is with the settings' own validation
        try:
            to_qos_settings(settings)
            to_publish_settings(settings)
        except (ValidationError, ValueError) as err:
            reason = problems(err)[0][1] if isinstance(err, ValidationError) else str(err)
            found.append(f"the resulting settings are refused: {reason}")
    return tuple(found)
