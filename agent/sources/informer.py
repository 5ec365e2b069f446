"""An informer: list, then watch, one kind of object into a local cache, in a thread.

Like client-go's reflector it lists once, then watches from the list's resourceVersion. It
lists again when the server says 410 Gone (the version was compacted away) and after any
connection failure (a node-scoped list is small, and it guarantees the cache converges on
what changed while the API server was away). Failures back off exponentially with jitter,
honouring Retry-After. Between failures the cache keeps serving the last state it saw:
`snapshot().connected` says whether it is current.

Objects are parsed once, on arrival; one that fails to parse is left out and reported in
`snapshot().problems` instead of poisoning the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

from agent.errors import APIForbidden, APIGone, APIUnavailable, KubeError
from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.kube import KubeClient, Resource, WatchEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

# A watch that ends this quickly with nothing in it is treated like a failure (back off).
_SHORT_WATCH_S = 1.0


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class CacheSnapshot(Generic[T]):
    """What the informer holds at one instant.

    `synced`: a full listing has been seen at least once. `connected`: the last list/watch
    worked (False: these are the last known objects while the API server is away).
    `generation` grows whenever `items` change. `problems`: key → why it was left out.
    """

    items: Mapping[str, T] = field(default_factory=dict)
    synced: bool = False
    connected: bool = False
    generation: int = 0
    problems: Mapping[str, str] = field(default_factory=dict)


def _error_label(err: KubeError) -> str:
    if isinstance(err, APIGone):
        return "gone"
    if isinstance(err, APIUnavailable):
        return "unavailable"
    if isinstance(err, APIForbidden):
        return "forbidden"
    return "other"


class Informer(Generic[T]):
    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        parse: Callable[[dict[str, Any]], T],
        metrics: KubeMetrics,
        field_selector: str | None = None,
        label_selector: str | None = None,
        watch_timeout_s: int = 300,
        metadata_only: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._resource = resource
        self._parse = parse
        self._metrics = metrics
        self._field_selector = field_selector
        self._label_selector = label_selector
        self._watch_timeout_s = watch_timeout_s
        self._metadata_only = metadata_only
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._items: dict[str, T] = {}
        self._problems: dict[str, str] = {}
        self._generation = 0
        self._connected = False
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._label = resource.plural
        for gauge in (metrics.informer_synced, metrics.informer_connected):
            gauge.labels(self._label).set(0)

    # --- public ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"informer for {self._resource} already started")
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{self._label}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop watching and join the thread. A watch still opening when asked to stop only
        notices once its connection is up, so the stop is repeated until the thread exits."""
        self._stopping.set()
        thread = self._thread
        deadline = time.monotonic() + timeout_s
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            stream = self._stream
            if stream is not None:
                stream.stop()
            thread.join(0.05)

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def snapshot(self) -> CacheSnapshot[T]:
        with self._lock:
            return CacheSnapshot(
                items=MappingProxyType(dict(self._items)),
                synced=self._synced.is_set(),
                connected=self._connected,
                generation=self._generation,
                problems=MappingProxyType(dict(self._problems)),
            )

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        resource_version: str | None = None
        reason = "initial"
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist(reason)
                started = time.monotonic()
                resource_version, seen = self._watch(resource_version)
                if seen or time.monotonic() - started >= _SHORT_WATCH_S:
                    self._backoff.reset()
                else:  # the server hangs up at once: do not spin
                    self._stopping.wait(self._backoff.next_delay())
            except APIGone:
                # Compacted away: list again at once (client-go does the same).
                self._metrics.informer_errors.labels(self._label, "gone").inc()
                log.info("watch %s: resourceVersion expired, listing again", self._resource)
                resource_version, reason = None, "expired"
            except KubeError as err:
                self._set_connected(False)
                self._metrics.informer_errors.labels(self._label, _error_label(err)).inc()
                delay = self._backoff.next_delay(err.retry_after_s or 0.0)
                log.warning("%s; serving cached %s, retrying in %.1fs", err, self._resource, delay)
                resource_version, reason = None, "reconnect"
                self._stopping.wait(delay)
            except Exception:  # a bug must not freeze the cache silently: say so, start over
                self._set_connected(False)
                self._metrics.informer_errors.labels(self._label, "other").inc()
                log.exception("informer for %s failed; listing again", self._resource)
                resource_version, reason = None, "reconnect"
                self._stopping.wait(self._backoff.next_delay())

    def _relist(self, reason: str) -> str:
        listing = self._client.list(
            self._resource,
            field_selector=self._field_selector,
            label_selector=self._label_selector,
            metadata_only=self._metadata_only,
        )
        items: dict[str, T] = {}
        problems: dict[str, str] = {}
        for obj in listing.items:
            self._parse_into(obj, items, problems)
        with self._lock:
            changed = items != self._items or problems != self._problems
            self._items, self._problems = items, problems
            if changed:
                self._generation += 1
            self._connected = True
        self._metrics.informer_lists.labels(self._label, reason).inc()
        self._metrics.informer_objects.labels(self._label).set(len(items))
        self._metrics.informer_connected.labels(self._label).set(1)
        self._metrics.informer_synced.labels(self._label).set(1)
        self._synced.set()
        return listing.resource_version

    def _watch(self, resource_version: str) -> tuple[str, bool]:
        """Apply events until the server ends the stream; (last resourceVersion, any seen)."""
        stream = self._client.watch(
            self._resource,
            resource_version=resource_version,
            field_selector=self._field_selector,
            label_selector=self._label_selector,
            timeout_s=self._watch_timeout_s,
            metadata_only=self._metadata_only,
        )
        self._stream = stream
        seen = False
        try:
            if self._stopping.is_set():
                return resource_version, seen
            for event in stream:
                seen = True
                self._apply(event)
                resource_version = event.resource_version or resource_version
                if self._stopping.is_set():
                    break
        finally:
            stream.stop()
            self._stream = None
        return resource_version, seen

    def _apply(self, event: WatchEvent) -> None:
        self._metrics.informer_events.labels(self._label, event.type).inc()
        if event.type not in ("ADDED", "MODIFIED", "DELETED"):
            return
        key = object_key(event.object)
        with self._lock:
            before = (self._items.get(key), self._problems.get(key))
            if event.type == "DELETED":
                self._items.pop(key, None)
                self._problems.pop(key, None)
            else:
                self._parse_into(event.object, self._items, self._problems)
            changed = before != (self._items.get(key), self._problems.get(key))
            if changed:
                self._generation += 1
            count = len(self._items)
        self._metrics.informer_objects.labels(self._label).set(count)

    def _parse_into(
        self, obj: dict[str, Any], items: dict[str, T], problems: dict[str, str]
    ) -> None:
        key = object_key(obj)
        try:
            items[key] = self._parse(obj)
            problems.pop(key, None)
        except ValueError as err:
            items.pop(key, None)
            problems[key] = str(err)
            self._metrics.informer_parse_errors.labels(self._label).inc()
            log.warning("%s %s left out: %s", self._resource.kind, key, err)

    def _set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected
        self._metrics.informer_connected.labels(self._label).set(int(connected))


class InformerBacked(Generic[T]):
    """A watcher of this node's objects of one kind, built on one informer.

    A subclass names the resource, how one object is parsed, and the field selector that
    keeps the watch to this node (`{node}` stands for the node's name).
    """

    resource: ClassVar[Resource]
    selector: ClassVar[str]
    parse: Callable[[dict[str, Any]], T]

    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        metrics: KubeMetrics,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.node_name = node_name
        self._informer: Informer[T] = Informer(
            client,
            self.resource,
            parse=self.parse,
            metrics=metrics,
            field_selector=self.selector.format(node=node_name),
            backoff=backoff,
        )

    def start(self) -> None:
        self._informer.start()

    def stop(self) -> None:
        self._informer.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._informer.wait_synced(timeout_s)
