"""Fixtures for the cgroup tests: the real hierarchy, and kubelet-like trees built in it.

Tests marked `cgroup_v1` run on a host whose enforcement is cgroup v1 (hybrid included),
`cgroup_v2` on a pure v2 kernel (the VM of tests/vm); each skips with the reason otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from isolation.detect import Hierarchy, Mode, detect_hierarchy
from isolation.errors import DetectionError
from isolation.layout import Driver, Runtime
from lab.kubelet_tree import KubeletTree


def _hierarchy() -> Hierarchy | None:
    try:
        return detect_hierarchy()
    except DetectionError:
        return None


HIERARCHY = _hierarchy()


def _skip_reason(marker: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    if HIERARCHY is None:
        return "no cgroup hierarchy mounted at /sys/fs/cgroup"
    if marker == "cgroup_v1" and HIERARCHY.mode is Mode.V2:
        return "needs cgroup v1 controllers (this kernel is pure v2; see tests/vm)"
    if marker == "cgroup_v2" and HIERARCHY.mode is not Mode.V2:
        return "needs a pure cgroup v2 hierarchy (runs inside the VM: make test-vm)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Inside the VM of tests/vm the v2 tests must run, never skip: a guest without a pure
    v2 hierarchy (or without root) is an error, not a quiet pass."""
    if os.environ.get("COLOCD_IN_VM"):
        reason = _skip_reason("cgroup_v2")
        if reason is not None:
            raise pytest.UsageError(f"in the VM but cannot run the cgroup v2 tests: {reason}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked with both versions runs where either is available."""
    for item in items:
        markers = [m for m in ("cgroup_v1", "cgroup_v2") if item.get_closest_marker(m)]
        reasons = [r for r in map(_skip_reason, markers) if r]
        if markers and len(reasons) == len(markers):
            item.add_marker(pytest.mark.skip(reason=reasons[0]))


@pytest.fixture
def hierarchy() -> Hierarchy:
    assert HIERARCHY is not None
    return HIERARCHY


@pytest.fixture(
    params=[(Driver.CGROUPFS, Runtime.CONTAINERD), (Driver.SYSTEMD, Runtime.CRIO)],
    ids=["cgroupfs-containerd", "systemd-crio"],
)
def tree(request: pytest.FixtureRequest, hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    """A kubelet-like tree, once per driver naming; removed afterwards."""
    driver, runtime = request.param
    with KubeletTree(driver, runtime, hierarchy=hierarchy) as t:
        yield t


@pytest.fixture
def cgroupfs_tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    """One naming, for tests where names do not matter (knobs, readers, enforcement)."""
    with KubeletTree(Driver.CGROUPFS, Runtime.CONTAINERD, hierarchy=hierarchy) as t:
        yield t
