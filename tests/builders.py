"""Builders for pods in tests: quantities as strings, as they appear in manifests."""

from __future__ import annotations

from decimal import Decimal

from agent.sources.quantity import parse_quantity
from qos.pod import Container, Pod, Resources


def res(requests: dict | None = None, limits: dict | None = None) -> Resources:
    """Resources from quantity strings, as they appear in manifests (no defaulting)."""
    return Resources(
        requests={k: parse_quantity(v) for k, v in (requests or {}).items()},
        limits={k: parse_quantity(v) for k, v in (limits or {}).items()},
    )


def pod(
    *containers: Container,
    init: tuple[Container, ...] = (),
    pod_resources: Resources | None = None,
    namespace: str = "default",
    name: str = "p",
    **kw,
) -> Pod:
    return Pod(
        namespace=namespace,
        name=name,
        containers=containers,
        init_containers=init,
        pod_resources=pod_resources,
        **kw,
    )


def c(name: str = "app", requests: dict | None = None, limits: dict | None = None, **kw):
    return Container(name, res(requests, limits), **kw)


ZERO = Decimal(0)
