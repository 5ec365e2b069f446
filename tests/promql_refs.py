"""What PromQL expressions refer to, and what the agent declares, to check one against the
other without a server: metric names, label matchers, grouping labels.

Only the shapes the dashboard and the rules use are read (`name{l="v",...}`,
`by (a, b)`, `without (...)`); Prometheus itself parses every expression in the tests that
run it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from agent.report.metrics import AgentMetrics

__all__ = ["Declared", "Matcher", "declared", "grouping", "matchers", "metric_names"]

NAME = re.compile(r"\bcolocd_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(colocd_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


class Declared(NamedTuple):
    kind: str  # counter, gauge, histogram
    labels: frozenset[str]
    samples: frozenset[str]  # the series names it exposes


class Matcher(NamedTuple):
    metric: str
    label: str
    op: str
    value: str


def declared() -> dict[str, Declared]:
    """Every series name the agent can expose -> its metric (all of AgentMetrics and
    KubeMetrics, children or not)."""
    metrics = AgentMetrics(CollectorRegistry())
    out: dict[str, Declared] = {}
    for owner in (metrics, metrics.kube):
        for m in vars(owner).values():
            if not isinstance(m, MetricWrapperBase):
                continue
            # The client keeps these private; a childless metric exposes no samples to read.
            name, kind, labels = m._name, m._type, frozenset(m._labelnames)
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
            samples = frozenset(name + s for s in suffixes.get(kind, ("",)))
            if kind == "histogram":
                labels |= {"le"}
            for sample in samples:
                out[sample] = Declared(kind, labels, samples)
    return out


def metric_names(expr: str) -> set[str]:
    return set(NAME.findall(expr))


def matchers(expr: str) -> list[Matcher]:
    return [
        Matcher(metric, *m.groups())
        for metric, inner in SELECTOR.findall(expr)
        for m in MATCHER.finditer(inner)
    ]


def grouping(expr: str) -> set[str]:
    return {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")} - {""}
