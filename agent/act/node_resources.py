"""Publish the batch capacity on the Node as extended resources, cheaply.

`colocd.io/batch-cpu` (millicores), `colocd.io/batch-memory` (bytes) and `colocd.io/batch-gpu`
(hundredths of a GPU) are patched into both `status.capacity` and `status.allocatable`, so
the scheduler can place pods that request them.

The tick loop may call `publish()` every second; a write happens only when
- nothing was written yet since start (`first`);
- some resource moved by more than `change_threshold` (10 %) of the value last written, and
  by at least one `min_step`, and `min_interval_s` (60 s) passed since the last write
  (`changed`);
- or `max_interval_s` (5 min, ±10 % jitter) passed since the last write (`refresh`).
A failed write is retried after an exponential back-off (Retry-After honoured). The README
works out what this costs the API server for 10,000 nodes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from agent.errors import KubeError
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.kube import KubeClient
from qos.pod import BATCH_CPU, BATCH_GPU, BATCH_MEMORY

log = logging.getLogger(__name__)

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class BatchCapacity:
    """What batch pods may use on this node, in the units of the extended resources."""

    cpu_milli: int
    memory_bytes: int
    gpu_hundredths: int | None  # None: no GPU here, and no batch-gpu on the Node at all

    def __post_init__(self) -> None:
        for name in ("cpu_milli", "memory_bytes", "gpu_hundredths"):
            value = getattr(self, name)
            if name == "gpu_hundredths" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"batch capacity {name} must be a whole number >= 0, got {value!r}"
                )

    def as_tuple(self) -> tuple[int, int, int | None]:
        return (self.cpu_milli, self.memory_bytes, self.gpu_hundredths)

    def resources(self) -> dict[str, str]:
        out = {BATCH_CPU: str(self.cpu_milli), BATCH_MEMORY: str(self.memory_bytes)}
        if self.gpu_hundredths is not None:
            out[BATCH_GPU] = str(self.gpu_hundredths)
        return out


@dataclass(frozen=True, slots=True)
class PublishSettings:
    change_threshold: float = 0.10
    min_interval_s: float = 60.0
    max_interval_s: float = 300.0
    jitter: float = 0.10
    # The smallest change worth a write whatever its percentage: 0.1 core, 64 MiB, 0.05 GPU.
    min_step: BatchCapacity = field(default_factory=lambda: BatchCapacity(100, 64 * MIB, 5))

    def __post_init__(self) -> None:
        if not 0 <= self.change_threshold < 10:
            raise ValueError(f"change threshold {self.change_threshold} is not a fraction")
        if not 0 <= self.min_interval_s <= self.max_interval_s or self.max_interval_s <= 0:
            raise ValueError(
                f"need 0 <= min interval ({self.min_interval_s}s) <= max interval "
                f"({self.max_interval_s}s), max > 0"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter {self.jitter} must be in [0, 1)")


class PublishReason(StrEnum):
    FIRST = "first"
    CHANGED = "changed"
    REFRESH = "refresh"
    UNCHANGED = "unchanged"
    TOO_SOON = "too_soon"
    BACKOFF = "backoff"


WRITE_REASONS = (PublishReason.FIRST, PublishReason.CHANGED, PublishReason.REFRESH)


@dataclass(frozen=True, slots=True)
class PublishResult:
    written: bool
    reason: PublishReason
    error: str | None = None


class NodeResourcePublisher:
    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        metrics: KubeMetrics,
        settings: PublishSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.node_name = node_name
        self._metrics = metrics
        self.settings = settings or PublishSettings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = Backoff(1.0, self.settings.max_interval_s, rng=self._rng)
        self.published: BatchCapacity | None = None
        self._last_write = 0.0
        self._refresh_at = 0.0
        self._retry_at = 0.0
        # Every series from 0, so the first failed write shows in increase().
        for reason in PublishReason:
            if reason in WRITE_REASONS:
                for result in ("ok", "failed"):
                    metrics.node_status_writes.labels(reason.value, result)
            else:
                metrics.node_status_skips.labels(reason.value)

    def publish(self, capacity: BatchCapacity) -> PublishResult:
        now = self._clock()
        if now < self._retry_at:
            return self._skip(PublishReason.BACKOFF)
        if self.published is None:
            reason = PublishReason.FIRST
        elif now >= self._refresh_at:
            reason = PublishReason.REFRESH
        elif self._changed(self.published, capacity):
            if now - self._last_write < self.settings.min_interval_s:
                return self._skip(PublishReason.TOO_SOON)
            reason = PublishReason.CHANGED
        else:
            return self._skip(PublishReason.UNCHANGED)
        resources: dict[str, str | None] = dict(capacity.resources())
        if capacity.gpu_hundredths is None and (
            self.published is None or self.published.gpu_hundredths is not None
        ):
            resources[BATCH_GPU] = None  # a merge patch's null removes a stale batch-gpu
        patch = {"status": {"capacity": resources, "allocatable": resources}}
        try:
            self._client.patch_node_status(self.node_name, patch)
        except KubeError as err:
            self._retry_at = now + self._backoff.next_delay(err.retry_after_s or 0.0)
            self._metrics.node_status_writes.labels(reason.value, "failed").inc()
            log.warning("%s; next try in %.0fs", err, self._retry_at - now)
            return PublishResult(False, reason, str(err))
        self._backoff.reset()
        self.published = capacity
        self._last_write = now
        spread = self.settings.max_interval_s * self.settings.jitter
        self._refresh_at = now + self.settings.max_interval_s + self._rng.uniform(-spread, spread)
        self._metrics.node_status_writes.labels(reason.value, "ok").inc()
        self._metrics.node_batch_cpu.set(capacity.cpu_milli / 1000)
        self._metrics.node_batch_memory.set(capacity.memory_bytes)
        self._metrics.show_published_gpu(capacity.gpu_hundredths)
        log.info("node %s: published %s (%s)", self.node_name, resources, reason.value)
        return PublishResult(True, reason)

    def _changed(self, old: BatchCapacity, new: BatchCapacity) -> bool:
        threshold = self.settings.change_threshold
        steps = self.settings.min_step.as_tuple()
        if (old.gpu_hundredths is None) != (new.gpu_hundredths is None):
            return True  # a GPU came or went
        return any(
            abs(n - o) >= step and abs(n - o) > threshold * o
            for o, n, step in zip(old.as_tuple(), new.as_tuple(), steps, strict=True)
            if o is not None and n is not None
        )

    def _skip(self, reason: PublishReason) -> PublishResult:
        self._metrics.node_status_skips.labels(reason.value).inc()
        return PublishResult(False, reason)
