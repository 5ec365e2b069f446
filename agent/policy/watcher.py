"""The agent's view of the ColocationPolicies: watched, validated, resolved for its node.

    node = NodeWatcher(client, name, metrics); node.start()
    policies = PolicyWatcher(client, node, metrics, recorder); policies.start()
    every tick: current = policies.current()   # NodePolicy; recomputed only on change

Invalid objects and inconsistent merges never take effect (see `agent.policy.tracker`). The
agent reports them in its log and metrics; an inconsistent merge is also an Event on the
Node, since only this node's agent knows its merge. Conditions and Events on the policy
objects themselves come from the single `colocd policy controller`, not from every agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from agent.act.events import EventRecorder, EventType, ObjectRef
from agent.policy.tracker import NodePolicy, PolicyDocument, PolicyTracker, parse_document
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.informer import Informer, InformerBacked
from agent.sources.kube import POLICIES, KubeClient
from agent.sources.node_info import NodeWatcher

log = logging.getLogger(__name__)


class PolicyWatcher(InformerBacked[PolicyDocument]):
    def __init__(
        self,
        client: KubeClient,
        node: NodeWatcher,
        metrics: KubeMetrics,
        recorder: EventRecorder | None = None,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self._node = node
        self._metrics = metrics
        self._recorder = recorder
        self._informer: Informer[PolicyDocument] = Informer(
            client,
            POLICIES,
            parse=parse_document,
            metrics=metrics,
            backoff=backoff,
        )
        self._tracker = PolicyTracker()
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._current: NodePolicy | None = None
        self._rejected: set[tuple[str, int | None]] = set()

    def current(self) -> NodePolicy:
        snap = self._informer.snapshot()
        info = self._node.info()
        key = (snap.generation, self._node.generation)
        with self._lock:
            if key == self._key and self._current is not None:
                return self._current
            labels = info.labels if info is not None else {}
            current = self._tracker.resolve(snap.items, self._node.node_name, labels)
            self._key, previous, self._current = key, self._current, current
        self._report(snap.items, current, previous)
        return current

    def _report(
        self,
        docs: Mapping[str, PolicyDocument],
        current: NodePolicy,
        previous: NodePolicy | None,
    ) -> None:
        invalid = {(d.name, d.generation) for d in docs.values() if d.error is not None}
        self._metrics.policy_rejected.inc(len(invalid - self._rejected))
        self._rejected = invalid
        self._metrics.policy_objects.labels("valid").set(len(docs) - len(invalid))
        self._metrics.policy_objects.labels("invalid").set(len(invalid))
        self._metrics.policy_fallback.set(int(current.fallback))
        self._metrics.policy_ties.set(len(current.resolution.ties))
        for problem in current.problems:
            log.warning("policy: %s", problem)
        for tie in current.resolution.ties:
            log.info("policy tie: %s", tie)
        if previous is None or previous.resolution != current.resolution:
            applied = ", ".join(str(s) for s in current.resolution.applied) or "built-in only"
            log.info("policy for node %s: %s", self._node.node_name, applied)
        if self._recorder is not None:
            node = ObjectRef("v1", "Node", self._node.node_name)
            for problem in current.merge_problems:
                self._recorder.record(node, EventType.WARNING, "PolicyConflict", problem)
