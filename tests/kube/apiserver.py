"""A kube-apiserver double for the tests: kmock's KubernetesEmulator, made a bit more real.

kmock keeps objects in memory and serves list/watch/get/create/patch/delete over real HTTP,
and records every request. This subclass adds what colocd's code relies on and kmock leaves
out (see the testbed notes): resourceVersions (a counter stamped on every write, honoured by
watches), field and label selectors, server-side `timeoutSeconds`, the Eviction subresource
(201 and delete, or scripted answers such as 429 with Retry-After), "410 Gone" on demand,
and an API server that can go away (port closed) and come back on the same port.

`ApiServer` runs the emulator in a thread with its own event loop, so the synchronous
`kubernetes` client can be used from the test thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import kmock

_CLOSE = {"type": "__CLOSE__"}


def _get(obj: Mapping[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def field_selector_matches(selector: str, obj: Mapping[str, Any]) -> bool:
    """`a.b=x,c!=y` as the API server reads fieldSelector (equality only)."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            path, value = term.split("!=", 1)
            if str(_get(obj, path) or "") == value:
                return False
        else:
            path, value = term.replace("==", "=").split("=", 1)
            if str(_get(obj, path) or "") != value:
                return False
    return True


def label_selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """`k=v`, `k!=v`, `k`, `!k` terms (what colocd could send)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any


class ClusterEmulator(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.rv = 0
        self.compacted_rv = 0
        self.evictions: list[tuple[int, dict[str, str]]] = []
        self.uids = itertools.count(1)
        self.down = False
        # (method, path, status, headers, message): answered once, instead of the real thing
        self.failures: list[tuple[str, str, int, dict[str, str], str]] = []

    # --- writes: stamp resourceVersion, uid, generation ----------------------------------

    def _stamp(self, request: Any) -> None:
        if request.resource is None or not isinstance(request.data, dict):
            return
        self.rv += 1
        meta = request.data.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.rv)
        if request.action == kmock.action.CREATE:
            meta.setdefault("uid", f"uid-{next(self.uids):04d}")
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta["generation"] = 1
        elif request.action == kmock.action.UPDATE and "spec" in request.data:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                old = self.objects[key].raw.get("metadata", {}).get("generation", 1)
                meta["generation"] = old + 1

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if self.down:  # going away: refuse until the socket is closed
            body = _status(503, "ServiceUnavailable", "the API server is shutting down")
            return aiohttp.web.json_response(body, status=503)
        for failure in self.failures:
            method, path, status, headers, message = failure
            if request.method.value == method and request.url.path == path:
                self.failures.remove(failure)
                body = _status(status, "Scripted", message)
                return aiohttp.web.json_response(body, status=status, headers=headers)
        if request.subresource == "eviction" and request.method == kmock.method.POST:
            return await self._evict(request)
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            self._stamp(request)
        elif request.action == kmock.action.DELETE:
            self.rv += 1
        return await super()._handle(request)

    async def _evict(self, request: Any) -> aiohttp.web.StreamResponse:
        status, headers = self.evictions.pop(0) if self.evictions else (201, {})
        key = (kmock.resource("v1/pods"), request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return aiohttp.web.json_response(_status(404, "NotFound", "pod not found"), status=404)
        # DeleteOptions.preconditions.uid, as the real API server checks it.
        body = request.data if isinstance(request.data, dict) else {}
        wanted = ((body.get("deleteOptions") or {}).get("preconditions") or {}).get("uid")
        uid = (self.objects[key].raw.get("metadata") or {}).get("uid")
        if wanted is not None and wanted != uid:
            message = f"Precondition failed: UID in precondition: {wanted}, UID in object: {uid}"
            return aiohttp.web.json_response(_status(409, "Conflict", message), status=409)
        if status == 429:
            body = _status(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            )
            return aiohttp.web.json_response(body, status=429, headers=headers)
        if status >= 300:
            return aiohttp.web.json_response(_status(status, "Failure", "scripted"), status=status)
        async with self._lock:
            self.rv += 1
            obj = self.objects[key]
            raw = dict(obj.raw)
            raw["metadata"] = dict(raw["metadata"], resourceVersion=str(self.rv))
            obj.delete()
            await self._buses[key[0]].put({"type": "DELETED", "object": raw})
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201}, status=201
        )

    # --- reads: selectors, resourceVersion, timeouts ---------------------------------------

    @staticmethod
    def _selected(request: Any, obj: Mapping[str, Any]) -> bool:
        fields = request.params.get("fieldSelector")
        labels = request.params.get("labelSelector")
        if fields and not field_selector_matches(fields, obj):
            return False
        meta_labels = (obj.get("metadata") or {}).get("labels") or {}
        return not (labels and not label_selector_matches(labels, meta_labels))

    async def _serve_list(self, request: Any) -> Any:
        listing = await super()._serve_list(request)
        return {
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.rv)},
            "items": [o for o in listing["items"] if self._selected(request, o)],
        }

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        yield b""
        since = int(request.params.get("resourceVersion") or 0)
        if since and since < self.compacted_rv:
            yield {
                "type": "ERROR",
                "object": _status(410, "Expired", f"too old resource version: {since}"),
            }
            return
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        deadline = time.monotonic() + timeout
        bus = self._buses[request.resource]
        marker = await bus.mark()
        try:
            async with self._lock:
                initial = [
                    o.raw
                    for (res, ns, name), o in self.objects.items()
                    if res == request.resource
                    and not o.deleted
                    and (request.namespace is None or ns == request.namespace)
                ]
            for obj in initial:
                rv = int(obj.get("metadata", {}).get("resourceVersion") or 0)
                if rv > since and self._selected(request, obj):
                    yield {"type": "ADDED", "object": obj}
            stream = aiter(bus.stream(since=marker))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(anext(stream), remaining)
                except TimeoutError:
                    return
                if event.get("type") == _CLOSE["type"]:
                    return
                if event.get("type") == "ERROR":
                    yield event
                    return
                if self._selected(request, event.get("object", {})):
                    yield event
        finally:
            await bus.unmark(marker)

    # --- control from the test ------------------------------------------------------------

    async def broadcast(self, event: Mapping[str, Any]) -> None:
        for bus in list(self._buses.values()):
            await bus.put(dict(event))


class ApiServer:
    """The emulator on 127.0.0.1, in a background thread with its own event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kmock", daemon=True)
        self._thread.start()
        self.emulator: ClusterEmulator = self._run(self._make())
        self._server: kmock.Server | None = None
        self.port = 0
        self.start()

    async def _make(self) -> ClusterEmulator:
        emulator = ClusterEmulator()
        await emulator.__aenter__()
        for resource, kind, namespaced in (
            ("v1/pods", "Pod", True),
            ("v1/nodes", "Node", False),
            ("v1/events", "Event", True),
            ("colocd.io/v1alpha1/colocationpolicies", "ColocationPolicy", False),
        ):
            emulator.resources[resource] = {"kind": kind, "namespaced": namespaced}
        return emulator

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- up and down ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on the same port."""

        async def up() -> int:
            self._server = kmock.Server(self.emulator, port=self.port or None)
            await self._server.__aenter__()
            return self._server.port

        self.port = self._run(up())

    def stop(self) -> None:
        """Close every watch, then the listening socket: clients get connection refused."""

        async def down() -> None:
            self.emulator.down = True
            await self.emulator.broadcast(_CLOSE)
            await asyncio.sleep(0.05)
            assert self._server is not None
            await self._server.__aexit__(None, None, None)
            self._server = None
            self.emulator.down = False

        self._run(down())

    def close(self) -> None:
        if self._server is not None:
            self.stop()
        self._run(self.emulator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # --- scripting ------------------------------------------------------------------------

    def expire_watches(self) -> None:
        """Compact history: open watches get ERROR 410, and so does any watch from an older
        resourceVersion, until the client lists again."""

        async def expire() -> None:
            self.emulator.compacted_rv = self.emulator.rv + 1
            self.emulator.rv += 1
            gone = _status(410, "Expired", "too old resource version")
            await self.emulator.broadcast({"type": "ERROR", "object": gone})

        self._run(expire())

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        message: str = "scripted failure",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `method path` request with `status` instead."""

        async def add() -> None:
            self.emulator.failures.append((method, path, status, dict(headers or {}), message))

        self._run(add())

    def script_evictions(self, answers: Iterable[tuple[int, Mapping[str, str]]]) -> None:
        self.emulator.evictions.extend((code, dict(headers)) for code, headers in answers)

    # --- objects --------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", collection_path(obj), obj)

    def patch(self, obj: Mapping[str, Any], patch: Mapping[str, Any], subresource: str = "") -> Any:
        path = object_path(obj) + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, obj: Mapping[str, Any]) -> Any:
        return self.request("DELETE", object_path(obj))

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        with contextlib.suppress(urllib.error.HTTPError):
            return self.request("GET", object_path(obj))
        return None

    def delete_silently(self, obj: Mapping[str, Any]) -> None:
        """Remove an object without any watch event (a change made while clients are away)."""

        async def drop() -> None:
            async with self.emulator._lock:
                self.emulator.rv += 1
                self.emulator.objects[_key(obj)].delete()

        self._run(drop())

    def create_silently(self, obj: Mapping[str, Any]) -> None:
        async def put() -> None:
            async with self.emulator._lock:
                self.emulator.rv += 1
                stamped = json.loads(json.dumps(obj))
                stamped["metadata"]["resourceVersion"] = str(self.emulator.rv)
                stamped["metadata"].setdefault("uid", f"uid-{next(self.emulator.uids):04d}")
                self.emulator.objects[_key(obj)] = stamped

        self._run(put())

    def requests(self) -> list[Recorded]:
        async def snapshot() -> list[Recorded]:
            return [
                Recorded(
                    method=str(r.method.value),
                    path=r.url.path,
                    params=dict(r.params),
                    headers=dict(r.headers),
                    body=r.data,
                )
                for r in list(self.emulator._requests)
            ]

        return self._run(snapshot())


# --- paths ---------------------------------------------------------------------------------

_PLURALS = {
    "Pod": "pods",
    "Node": "nodes",
    "Event": "events",
    "ColocationPolicy": "colocationpolicies",
}


def collection_path(obj: Mapping[str, Any]) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    if namespace:
        return f"{base}/namespaces/{namespace}/{_PLURALS[kind]}"
    return f"{base}/{_PLURALS[kind]}"


def object_path(obj: Mapping[str, Any]) -> str:
    return f"{collection_path(obj)}/{obj['metadata']['name']}"


def _key(obj: Mapping[str, Any]) -> tuple[Any, str | None, str]:
    api_version = obj["apiVersion"]
    group_version = api_version if "/" in api_version else f"{api_version}"
    resource = kmock.resource(f"{group_version}/{_PLURALS[obj['kind']]}")
    return (resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail the test with a reason."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
