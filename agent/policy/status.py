"""`status` of the ColocationPolicy objects, written by one small controller, cheaply.

Status is cluster-wide knowledge (how many nodes a policy applies to), so it is not written
by the per-node agents (10,000 agents writing the same condition would be 10,000 writes).
One `colocd policy controller` (a one-replica Deployment) watches the policies and the
nodes' labels and, for each policy, writes:

- `conditions[type=Valid]`: True, or False with the reason (the same validation the agents
  apply, so "False" means the agents ignore this version);
- `matchedNodes`: how many nodes the policy (its last valid version) applies to;
- `observedGeneration`.

A write happens only when that content changed (timestamps aside), and at most once per
`min_write_interval_s` per policy; a change within the interval is written when it ends. A
policy that becomes invalid also gets a Warning Event, once per generation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.act.events import EventRecorder, EventType, ObjectRef
from agent.errors import KubeError
from agent.policy.model import GROUP_VERSION, KIND, ColocationPolicy
from agent.policy.resolve import applies
from agent.policy.tracker import PolicyDocument, PolicyTracker, parse_document
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.informer import Informer
from agent.sources.kube import NODES, POLICIES, KubeClient
from agent.sources.node_info import NodeInfo, parse_node_labels

log = logging.getLogger(__name__)

VALID = "Valid"


@dataclass(slots=True)
class StatusReport:
    written: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def matched_nodes(policy: ColocationPolicy, nodes: Iterable[NodeInfo]) -> int:
    return sum(1 for n in nodes if applies(policy.spec, n.name, n.labels))


def _valid_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for condition in status.get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == VALID:
            return condition
    return {}


def _comparable(status: Mapping[str, Any]) -> tuple[Any, ...]:
    c = _valid_condition(status)
    return (
        status.get("observedGeneration"),
        status.get("matchedNodes"),
        tuple(c.get(k) for k in ("status", "reason", "message", "observedGeneration")),
    )


class PolicyStatusController:
    def __init__(
        self,
        client: KubeClient,
        metrics: KubeMetrics,
        recorder: EventRecorder,
        *,
        min_write_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._recorder = recorder
        self._min_write_interval_s = min_write_interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._tracker = PolicyTracker()
        self._last_write: dict[str, float] = {}

    def reconcile(
        self, documents: Mapping[str, PolicyDocument], nodes: Iterable[NodeInfo]
    ) -> StatusReport:
        nodes = list(nodes)
        in_force, _ = self._tracker.in_force(documents)
        report = StatusReport()
        now = self._clock()
        for name in set(self._last_write) - set(documents):
            del self._last_write[name]
        invalid = 0
        for name in sorted(documents):
            doc = documents[name]
            invalid += doc.error is not None
            kept = in_force.get(name)
            desired = self._desired(doc, matched_nodes(kept, nodes) if kept else 0)
            if _comparable(desired) == _comparable(doc.status):
                report.unchanged.append(name)
                continue
            if now - self._last_write.get(name, -float("inf")) < self._min_write_interval_s:
                report.deferred.append(name)
                continue
            self._last_write[name] = now
            try:
                self._client.patch_policy_status(name, {"status": desired})
            except KubeError as err:
                self._metrics.policy_status_writes.labels("failed").inc()
                log.warning("%s", err)
                report.failed.append(name)
                continue
            self._metrics.policy_status_writes.labels("ok").inc()
            report.written.append(name)
            self._announce(doc, desired)
        self._metrics.policy_objects.labels("valid").set(len(documents) - invalid)
        self._metrics.policy_objects.labels("invalid").set(invalid)
        return report

    def _desired(self, doc: PolicyDocument, matched: int) -> dict[str, Any]:
        valid = doc.error is None
        old = _valid_condition(doc.status)
        status = "True" if valid else "False"
        same = old.get("status") == status and old.get("lastTransitionTime")
        condition = {
            "type": VALID,
            "status": status,
            "reason": "Valid" if valid else "InvalidSpec",
            "message": "" if valid else (doc.error or ""),
            "lastTransitionTime": old["lastTransitionTime"]
            if same
            else self._wall_clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observedGeneration": doc.generation,
        }
        return {
            "observedGeneration": doc.generation,
            "matchedNodes": matched,
            "conditions": [condition],
        }

    def _announce(self, doc: PolicyDocument, desired: Mapping[str, Any]) -> None:
        was = _valid_condition(doc.status).get("status")
        now = desired["conditions"][0]["status"]
        ref = ObjectRef(GROUP_VERSION, KIND, doc.name, None, doc.uid)
        if now == "False" and (
            was != "False" or doc.status.get("observedGeneration") != doc.generation
        ):
            message = f"generation {doc.generation} is invalid and not used: {doc.error}"
            self._recorder.record(ref, EventType.WARNING, "InvalidPolicy", message)
        elif now == "True" and was == "False":
            message = f"generation {doc.generation} is valid again"
            self._recorder.record(ref, EventType.NORMAL, "PolicyValid", message)


def run_status_controller(
    client: KubeClient,
    metrics: KubeMetrics,
    recorder: EventRecorder,
    stop: threading.Event,
    *,
    interval_s: float = 5.0,
    min_write_interval_s: float = 10.0,
    backoff: Backoff | None = None,
) -> None:
    """Watch policies and node labels; reconcile on change (and while writes are deferred)
    every `interval_s` until `stop` is set."""
    policies: Informer[PolicyDocument] = Informer(
        client, POLICIES, parse=parse_document, metrics=metrics, backoff=backoff
    )
    nodes: Informer[NodeInfo] = Informer(
        client, NODES, parse=parse_node_labels, metrics=metrics, backoff=backoff, metadata_only=True
    )
    controller = PolicyStatusController(
        client, metrics, recorder, min_write_interval_s=min_write_interval_s
    )
    policies.start()
    nodes.start()
    try:
        seen: tuple[int, int] | None = None
        pending = False
        while not stop.is_set():
            p, n = policies.snapshot(), nodes.snapshot()
            if p.synced and n.synced and ((p.generation, n.generation) != seen or pending):
                report = controller.reconcile(p.items, n.items.values())
                seen = (p.generation, n.generation)
                pending = bool(report.deferred or report.failed)
            stop.wait(interval_s)
    finally:
        policies.stop()
        nodes.stop()
