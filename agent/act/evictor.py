"""Carry out eviction decisions through the Eviction API (policy/v1).

The brain (`qos/`) decides *whom* to evict and *when* (rate, cool-down, hysteresis); this
module only executes, safely:

- The Eviction API, never a plain delete, so the API server honours PodDisruptionBudgets.
- 429 Too Many Requests (a PDB would be violated, or the server sheds load) means back off:
  the pod is not tried again before the server's Retry-After, or an exponential delay.
- Every eviction carries the pod's UID as a precondition: a pod deleted and re-created
  under the same name since the decision is not evicted in its place (409: `gone`).
- Every eviction, and every refusal, gets a Kubernetes Event on the pod with the reason.
- Every outcome is counted in `colocd_eviction_requests_total{result}`.
- `dry_run=True` decides and counts but calls nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from agent.act.events import EventRecorder, EventType, ObjectRef
from agent.errors import APIConflict, APINotFound, KubeError, TooManyRequests
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.kube import KubeClient
from qos.pod import Pod

log = logging.getLogger(__name__)


class EvictionResult(StrEnum):
    EVICTED = "evicted"
    DRY_RUN = "dry_run"
    BLOCKED = "blocked"  # 429: a PodDisruptionBudget (or the server) said not now
    BACKOFF = "backoff"  # not tried: still inside the back-off of an earlier refusal
    GONE = "gone"  # the pod no longer exists
    FAILED = "failed"  # any other API error


@dataclass(frozen=True, slots=True)
class EvictionRequest:
    namespace: str
    name: str
    uid: str
    reason: str  # one line: why colocd evicts it

    @classmethod
    def for_pod(cls, pod: Pod, reason: str) -> EvictionRequest:
        return cls(pod.namespace, pod.name, pod.uid, reason)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class EvictionOutcome:
    request: EvictionRequest
    result: EvictionResult
    message: str
    retry_at: float | None = None  # clock time before which the pod is not tried again


@dataclass(slots=True)
class _Refusal:
    backoff: Backoff
    retry_at: float = field(default=0.0)


class Evictor:
    def __init__(
        self,
        client: KubeClient,
        recorder: EventRecorder,
        metrics: KubeMetrics,
        *,
        grace_period_s: int | None = None,
        initial_backoff_s: float = 5.0,
        max_backoff_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._recorder = recorder
        self._metrics = metrics
        self._grace_period_s = grace_period_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._refusals: dict[str, _Refusal] = {}
        count_from_zero(metrics)

    def evict(self, request: EvictionRequest, *, dry_run: bool = False) -> EvictionOutcome:
        now = self._clock()
        self._forget_old(now)
        refusal = self._refusals.get(request.key)
        if refusal is not None and now < refusal.retry_at:
            wait = refusal.retry_at - now
            return self._done(
                request, EvictionResult.BACKOFF, f"backing off for {wait:.0f}s", refusal.retry_at
            )
        if dry_run:
            return self._done(request, EvictionResult.DRY_RUN, f"would evict: {request.reason}")
        pod = ObjectRef("v1", "Pod", request.name, request.namespace, request.uid)
        try:
            self._client.evict_pod(
                request.namespace, request.name, request.uid, grace_period_s=self._grace_period_s
            )
        except APINotFound:
            self._refusals.pop(request.key, None)
            return self._done(request, EvictionResult.GONE, "pod already gone")
        except APIConflict:
            # The UID precondition failed: a new pod took the name; it was not decided on.
            self._refusals.pop(request.key, None)
            return self._done(request, EvictionResult.GONE, "pod replaced by a new one (uid)")
        except TooManyRequests as err:
            retry_at = self._refuse(request.key, now, err.retry_after_s)
            message = f"eviction refused, retrying in {retry_at - now:.0f}s: {err.reason}"
            self._recorder.record(pod, EventType.WARNING, "EvictionBlocked", message)
            return self._done(request, EvictionResult.BLOCKED, message, retry_at)
        except KubeError as err:
            retry_at = self._refuse(request.key, now, err.retry_after_s)
            return self._done(request, EvictionResult.FAILED, str(err), retry_at)
        self._refusals.pop(request.key, None)
        message = f"colocd evicted the pod through the Eviction API: {request.reason}"
        self._recorder.record(pod, EventType.WARNING, "Evicted", message)
        return self._done(request, EvictionResult.EVICTED, message)

    def _refuse(self, key: str, now: float, retry_after_s: float | None) -> float:
        refusal = self._refusals.get(key)
        if refusal is None:
            refusal = _Refusal(Backoff(self._initial_backoff_s, self._max_backoff_s, jitter=0.1))
            self._refusals[key] = refusal
        refusal.retry_at = now + refusal.backoff.next_delay(retry_after_s or 0.0)
        return refusal.retry_at

    def _forget_old(self, now: float) -> None:
        """Drop refusals long past (the pod was never tried again, or is gone)."""
        stale = [k for k, r in self._refusals.items() if now - r.retry_at > self._max_backoff_s]
        for key in stale:
            del self._refusals[key]

    def _done(
        self,
        request: EvictionRequest,
        result: EvictionResult,
        message: str,
        retry_at: float | None = None,
    ) -> EvictionOutcome:
        return record(self._metrics, EvictionOutcome(request, result, message, retry_at))


def count_from_zero(metrics: KubeMetrics) -> None:
    """Every result's series from 0, so the first failure shows in increase()."""
    for result in EvictionResult:
        metrics.evictions.labels(result.value)


def record(metrics: KubeMetrics, outcome: EvictionOutcome) -> EvictionOutcome:
    """Count and log an eviction's outcome, however it was carried out (API or signals)."""
    metrics.evictions.labels(outcome.result.value).inc()
    level = logging.WARNING if outcome.result is EvictionResult.FAILED else logging.INFO
    request = outcome.request
    log.log(level, "evict pod %s: %s: %s", request.key, outcome.result.value, outcome.message)
    return outcome
