"""Fixtures for the Kubernetes tests: a real HTTP API server double and the real client."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from agent.report.metrics import KubeMetrics
from agent.sources.backoff import Backoff
from agent.sources.kube import KubeClient

from .apiserver import ApiServer


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client(api: ApiServer) -> Iterator[KubeClient]:
    kube = KubeClient.for_url(api.url)
    try:
        yield kube
    finally:
        kube.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> KubeMetrics:
    return KubeMetrics(registry)


@pytest.fixture
def backoff() -> Backoff:
    """Fast retries, so reconnection tests take a fraction of a second."""
    return Backoff(0.05, 0.3, rng=random.Random(7))


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
