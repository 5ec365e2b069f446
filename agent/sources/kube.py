"""The Kubernetes API adapter: the only module that imports `kubernetes`.

Everything above it (informers, the node publisher, the evictor, the policy watcher) talks to
`KubeClient`, which speaks plain JSON dicts and raises only the `KubeError` tree from
`agent.errors`. Each client exception is translated here, chained with `from`, with the
server's message cut to `MAX_REASON` characters, so callers classify errors by type.

Objects are read as raw JSON (`_preload_content=False`) and never turned into the client's
models: the agent keeps hundreds of pods in memory, and the dicts have exactly the shape
`ApiClient.sanitize_for_serialization` would give (camelCase keys), which is what
`agent.sources.pod_manifest.parse_pod` reads.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.config.config_exception import ConfigException

from agent.errors import (
    APIConflict,
    APIForbidden,
    APIGone,
    APIInvalid,
    APINotFound,
    APIUnavailable,
    ConfigError,
    InputError,
    KubeError,
    TooManyRequests,
)
from agent.inputs import parse_yaml, read_text

log = logging.getLogger(__name__)

MAX_REASON = 256
MAX_KUBECONFIG_BYTES = 2**20  # a kubeconfig with a few embedded certificates is ~20 KiB
MERGE_PATCH = "application/merge-patch+json"
# Ask for metadata only (names, labels), as client-go's metadata informers do; servers that
# cannot answer so fall back to the plain JSON listed second.
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
# (connect, read) seconds for ordinary calls; watches read for longer (see `watch`).
DEFAULT_TIMEOUT_S = (5.0, 20.0)


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind of object the agent reads or writes."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
POLICIES = Resource(
    "colocd.io", "v1alpha1", "colocationpolicies", "ColocationPolicy", namespaced=False
)


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: tuple[dict[str, Any], ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """`type` is ADDED, MODIFIED, DELETED or BOOKMARK; `object` the raw object."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str | None:
        meta = self.object.get("metadata")
        return meta.get("resourceVersion") if isinstance(meta, dict) else None


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _status_message(err: k8s.ApiException) -> str:
    """The `message` of a Kubernetes Status body, else whatever the client kept."""
    body = err.body
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip():
        try:
            status = json.loads(body)
        except ValueError:
            return body
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
        return body
    return str(err.reason or "")


def _retry_after(err: k8s.ApiException) -> float | None:
    headers = err.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


_BY_STATUS: dict[int, type[KubeError]] = {
    400: APIInvalid,
    401: APIForbidden,
    403: APIForbidden,
    404: APINotFound,
    409: APIConflict,
    410: APIGone,
    422: APIInvalid,
    429: TooManyRequests,
}


def translate(
    err: k8s.ApiException | urllib3.exceptions.HTTPError | OSError, action: str, target: str
) -> KubeError:
    """The `KubeError` for a client or transport exception (callers raise it `from err`)."""
    if not isinstance(err, k8s.ApiException):
        return APIUnavailable(action, target, _cut(f"API server unreachable: {err}"))
    status = err.status or None
    message = _status_message(err)
    reason = _cut(f"{status} {message}" if status else message)
    if status is None or status >= 500:
        return APIUnavailable(action, target, reason or "no answer", status)
    cls = _BY_STATUS.get(status, KubeError)
    return cls(action, target, reason, status, _retry_after(err))


_CLIENT_ERRORS = (k8s.ApiException, urllib3.exceptions.HTTPError, OSError)


class WatchStream:
    """Events of one watch request; iterate it, `stop()` it from any thread.

    The stream ends when the server closes it (after `timeout_s`), and raises `APIGone` when
    the resourceVersion is too old, or another `KubeError` when the connection fails.
    """

    def __init__(self, start: Callable[[k8s_watch.Watch], Iterator[dict[str, Any]]], target: str):
        self._watch = k8s_watch.Watch()
        self._start = start
        self._target = target
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            for raw in self._start(self._watch):
                if self._stopped.is_set():
                    return
                if not isinstance(raw, dict):  # a blank or unreadable line
                    continue
                obj = raw.get("raw_object", raw.get("object"))
                if isinstance(obj, dict):
                    yield WatchEvent(str(raw.get("type")), obj)
        except _CLIENT_ERRORS as err:
            if self._stopped.is_set():
                return
            raise translate(err, "watch", self._target) from err


def _untyped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`Watch.stream` deserializes into models when it can find the return type; a plain
    wrapper hides it so events stay raw dicts (and ERROR events keep `raw_object`)."""

    def call(**kwargs: Any) -> Any:
        return fn(**kwargs)

    return call


def _read_json(response: Any) -> dict[str, Any]:
    body = json.loads(_drain(response) or b"{}")
    return body if isinstance(body, dict) else {}


def _drain(response: Any) -> bytes:
    try:
        return bytes(response.data or b"")
    finally:
        response.release_conn()


def _check_kubeconfig(path: str) -> None:
    """Read the file through the bounded reader first: the client's own YAML loader would
    end a deeply nested, huge or binary file in a traceback (or hang on a FIFO)."""
    try:
        data = parse_yaml(read_text(path, MAX_KUBECONFIG_BYTES))
    except InputError as err:
        raise ConfigError(f"load Kubernetes credentials from {path}: {err.reason}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"load Kubernetes credentials from {path}: not a kubeconfig mapping")


class KubeClient:
    """The agent's whole use of the API, as plain methods over raw dicts.

    Build it with `connect()` (kubeconfig or in-cluster) or `for_url()` (tests, kubectl
    proxy). Every method raises only `KubeError` subclasses.
    """

    def __init__(
        self, api_client: k8s.ApiClient, *, timeout_s: tuple[float, float] = DEFAULT_TIMEOUT_S
    ):
        self._api = api_client
        self._core = k8s.CoreV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._timeout = timeout_s

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """In-cluster credentials when running in a pod and no kubeconfig is given."""
        configuration = k8s.Configuration()
        try:
            if kubeconfig is None:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)
                except ConfigException:
                    k8s_config.load_kube_config(context=context, client_configuration=configuration)
            else:
                _check_kubeconfig(kubeconfig)
                k8s_config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
        except (ConfigException, OSError, ValueError) as err:
            where = kubeconfig or "the default kubeconfig"
            raise ConfigError(
                f"load Kubernetes credentials from {where}: {_cut(str(err))}"
            ) from err
        return cls(_api_client(configuration))

    @classmethod
    def for_url(cls, url: str) -> KubeClient:
        """An unauthenticated client for a plain-HTTP endpoint (kubectl proxy, test servers)."""
        configuration = k8s.Configuration()
        configuration.host = url.rstrip("/")
        return cls(_api_client(configuration))

    def close(self) -> None:
        self._api.close()

    # --- reads -------------------------------------------------------------------------

    def _lister(self, resource: Resource) -> Callable[..., Any]:
        if resource == PODS:
            return self._core.list_pod_for_all_namespaces
        if resource == NODES:
            return self._core.list_node
        if resource == POLICIES:
            r = resource

            def custom(**kwargs: Any) -> Any:
                return self._custom.list_cluster_custom_object(
                    r.group, r.version, r.plural, **kwargs
                )

            return custom
        raise ValueError(f"cannot list {resource}")

    def list(
        self,
        resource: Resource,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        metadata_only: bool = False,
    ) -> ObjectList:
        """`metadata_only` returns objects with `metadata` alone, much smaller for nodes."""
        target = _selected(resource, field_selector, label_selector)
        try:
            response = self._lister(resource)(
                field_selector=field_selector,
                label_selector=label_selector,
                _preload_content=False,
                _request_timeout=self._timeout,
                _headers={"Accept": _METADATA_LIST} if metadata_only else None,
            )
            body = _read_json(response)
        except _CLIENT_ERRORS as err:
            raise translate(err, "list", target) from err
        except ValueError as err:
            raise APIUnavailable("list", target, f"answer is not JSON: {_cut(str(err))}") from err
        items = body.get("items") or []
        rv = (body.get("metadata") or {}).get("resourceVersion") or ""
        return ObjectList(tuple(i for i in items if isinstance(i, dict)), str(rv))

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        field_selector: str | None = None,
        label_selector: str | None = None,
        timeout_s: int = 300,
        metadata_only: bool = False,
    ) -> WatchStream:
        """Changes after `resource_version`. The server ends the stream after `timeout_s`;
        a silent connection is given up 30 s after that."""
        lister = _untyped(self._lister(resource))

        def start(w: k8s_watch.Watch) -> Iterator[dict[str, Any]]:
            return w.stream(
                lister,
                resource_version=resource_version,
                field_selector=field_selector,
                label_selector=label_selector,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_s,
                _request_timeout=(self._timeout[0], timeout_s + 30),
                _headers={"Accept": _METADATA_WATCH} if metadata_only else None,
            )

        return WatchStream(start, _selected(resource, field_selector, label_selector))

    # --- writes ------------------------------------------------------------------------

    def _send(self, action: str, target: str, call: Callable[..., Any], *args: Any) -> None:
        """Make one write call (raw response, our timeouts) and translate its failure."""
        try:
            _drain(call(*args, _preload_content=False, _request_timeout=self._timeout))
        except _CLIENT_ERRORS as err:
            raise translate(err, action, target) from err

    def patch_node_status(self, name: str, patch: Mapping[str, Any]) -> None:
        """JSON merge patch of `nodes/<name>/status`."""
        call = functools.partial(self._core.patch_node_status, _content_type=MERGE_PATCH)
        self._send("patch status of", f"node {name}", call, name, dict(patch))

    def patch_policy_status(self, name: str, patch: Mapping[str, Any]) -> None:
        """JSON merge patch of `colocationpolicies/<name>/status`."""
        r = POLICIES
        call = functools.partial(
            self._custom.patch_cluster_custom_object_status, _content_type=MERGE_PATCH
        )
        self._send(
            "patch status of",
            f"{r.kind} {name}",
            call,
            r.group,
            r.version,
            r.plural,
            name,
            dict(patch),
        )

    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        call = self._core.create_namespaced_event
        self._send("create event in", f"namespace {namespace}", call, namespace, dict(event))

    def evict_pod(
        self, namespace: str, name: str, uid: str, *, grace_period_s: int | None = None
    ) -> None:
        """POST a policy/v1 Eviction: the API server checks PodDisruptionBudgets (429 when
        one would be violated) and then deletes the pod gracefully. The UID precondition
        makes it refuse (409) when the pod by that name is no longer the one decided on
        (deleted and re-created since)."""
        options: dict[str, Any] = {"preconditions": {"uid": uid}} if uid else {}
        if grace_period_s is not None:
            options["gracePeriodSeconds"] = grace_period_s
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if options:
            body["deleteOptions"] = options
        call = self._core.create_namespaced_pod_eviction
        self._send("evict", f"pod {namespace}/{name}", call, name, namespace, body)


def _selected(resource: Resource, field_selector: str | None, label_selector: str | None) -> str:
    parts = [s for s in (field_selector, label_selector) if s]
    return f"{resource} ({', '.join(parts)})" if parts else str(resource)


def _api_client(configuration: k8s.Configuration) -> k8s.ApiClient:
    # One quick transport retry (a pooled connection the server closed); callers back off.
    configuration.retries = 1
    return k8s.ApiClient(configuration)
