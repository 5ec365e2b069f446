"""Kubernetes Events from colocd, so `kubectl describe` shows what it did and why.

Events are best effort: a failure is logged and counted, never raised, because no decision
should wait on them. The same event (object, reason, message) is written at most once per
`repeat_after_s`, so a condition that persists for hours costs a handful of writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from agent.errors import KubeError
from agent.report.metrics import KubeMetrics
from agent.sources.kube import KubeClient

log = logging.getLogger(__name__)

COMPONENT = "colocd"
MAX_MESSAGE = 1024
# Events about cluster-scoped objects (nodes, policies) live here, as kubectl expects.
CLUSTER_EVENTS_NAMESPACE = "default"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about (`involvedObject`)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(
        self,
        client: KubeClient,
        *,
        host: str,
        metrics: KubeMetrics,
        repeat_after_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._host = host
        self._metrics = metrics
        self._repeat_after_s = repeat_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: dict[tuple[ObjectRef, str, str], float] = {}

    def record(self, ref: ObjectRef, type_: EventType, reason: str, message: str) -> bool:
        """Write one Event; False when it was a recent repeat or the write failed."""
        message = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
        key = (ref, reason, message)
        now = self._clock()
        with self._lock:
            self._sent = {k: t for k, t in self._sent.items() if now - t < self._repeat_after_s}
            if key in self._sent:
                self._metrics.events.labels(type_.value, "suppressed").inc()
                return False
            self._sent[key] = now
        namespace = ref.namespace or CLUSTER_EVENTS_NAMESPACE
        try:
            self._client.create_event(namespace, self._body(ref, type_, reason, message))
        except KubeError as err:
            with self._lock:
                self._sent.pop(key, None)
            self._metrics.events.labels(type_.value, "failed").inc()
            log.warning("%s (event %s on %s: %s)", err, reason, ref, message)
            return False
        self._metrics.events.labels(type_.value, "sent").inc()
        return True

    def _body(self, ref: ObjectRef, type_: EventType, reason: str, message: str) -> dict:
        stamp = _timestamp(datetime.now(UTC))
        involved = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
        if ref.namespace:
            involved["namespace"] = ref.namespace
        if ref.uid:
            involved["uid"] = ref.uid
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.name}.{time.time_ns():x}",
                "namespace": ref.namespace or CLUSTER_EVENTS_NAMESPACE,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_.value,
            "source": {"component": COMPONENT, "host": self._host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
