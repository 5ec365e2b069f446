"""benchmarks/_tree.py on the host's real cgroup v1: what it adds to lab.kubelet_tree (node
memory limit, oom_score_adj, levels by name, v1 files) and its safe teardown.

KubeletTree's own layout and values are tested in tests/cgroups/test_kubelet_tree.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks._harness import pod
from benchmarks._tree import build_tree
from benchmarks.errors import TreeError
from qos.k8s_qos import QOSClass
from tests.host_cgroups import requires_cgroup_v1

MIB = 1 << 20
NODE_MEMORY = 2048 * MIB
UNLIMITED = 9223372036854771712  # v1's "no limit" on 4 KiB pages
CAP_SYS_RESOURCE = 24

GUARANTEED = pod("db", {"main": {"limits": {"cpu": "1", "memory": "256Mi"}}})
BURSTABLE = pod(
    "web",
    {
        "app": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "sidecar": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}},
    },
)
BESTEFFORT = pod("batch", {"hog": {}})
PODS = [GUARANTEED, BURSTABLE, BESTEFFORT]

pytestmark = [pytest.mark.cgroup_v1, requires_cgroup_v1]


def _has_cap_sys_resource() -> bool:
    status = Path("/proc/self/status").read_text()
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> CAP_SYS_RESOURCE & 1)


def _cgroup_lines(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {c: p for _, cs, p in (line.split(":", 2) for line in lines) for c in cs.split(",")}


@pytest.fixture
def tree():
    with build_tree(PODS, 2000, NODE_MEMORY) as tree:
        yield tree


@pytest.mark.parametrize(
    ("level", "shares", "quota", "memory"),
    [
        ("kubepods", 2048, -1, NODE_MEMORY),  # the node-sized memory cgroup
        ("burstable", 614, -1, UNLIMITED),  # 500m + 100m of requests
        ("besteffort", 2, -1, UNLIMITED),
        ("pod:db", 1024, 100_000, 256 * MIB),
        ("container:web/sidecar", 102, 20_000, UNLIMITED),
        ("container:batch/hog", 2, -1, UNLIMITED),
    ],
)
def test_levels_read_kubelets_values(tree, level: str, shares: int, quota: int, memory: int):
    kind, _, name = level.partition(":")
    if kind == "pod":
        d = tree.pod(name)
    elif kind == "container":
        d = tree.container(*name.split("/"))
    elif level == "kubepods":
        d = tree.kubepods
    else:
        d = tree.qos({"burstable": QOSClass.BURSTABLE, "besteffort": QOSClass.BEST_EFFORT}[level])
    assert int(d.read("cpu.shares")) == shares
    assert int(d.read("cpu.cfs_quota_us")) == quota
    assert int(d.read("memory.limit_in_bytes")) == memory


def test_writes_land_in_the_level_and_guaranteed_sits_in_kubepods(tree) -> None:
    besteffort = tree.qos(QOSClass.BEST_EFFORT)
    besteffort.write("cpu.idle", 1)
    assert besteffort.read("cpu.idle") == "1"
    assert tree.qos(QOSClass.GUARANTEED).paths == tree.kubepods.paths
    assert tree.pod("db").paths["cpu"].parent == tree.kubepods.paths["cpu"]
    for path in tree.kubepods.paths.values():
        assert path.parent.name == tree.top.rsplit("/", 1)[1]
        assert path.parent.name.startswith("colocd-test-")


@pytest.mark.parametrize(
    ("pod_name", "container", "oom_score_adj"),
    [("web", "app", 500), ("batch", "hog", 1000)],
)
def test_place_moves_the_pid_everywhere_with_kubelets_oom_score(
    tree, pod_name: str, container: str, oom_score_adj: int
) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        tree.place(pod_name, container, child.pid)
        where = _cgroup_lines(child.pid)
        leaf = tree.container(pod_name, container).paths
        for controller in ("cpu", "cpuacct", "cpuset", "memory"):
            assert where[controller].endswith(leaf[controller].name)
            assert f"/{tree.top}/" in where[controller]
        assert int(Path(f"/proc/{child.pid}/oom_score_adj").read_text()) == oom_score_adj
    finally:
        child.kill()
        child.wait()


def test_guaranteed_gets_minus_997_or_a_clear_error_without_cap_sys_resource(tree) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        if _has_cap_sys_resource():
            tree.place("db", "main", child.pid)
            assert Path(f"/proc/{child.pid}/oom_score_adj").read_text().strip() == "-997"
        else:
            with pytest.raises(TreeError, match=r"to -997: .*needs CAP_SYS_RESOURCE"):
                tree.place("db", "main", child.pid)
    finally:
        child.kill()
        child.wait()


def test_unknown_names_and_foreign_files_are_one_line_errors(tree) -> None:
    with pytest.raises(TreeError, match="no such pod"):
        tree.pod("nope")
    with pytest.raises(TreeError, match="no such container"):
        tree.container("web", "nope")
    with pytest.raises(TreeError, match="not a cpu/cpuacct/cpuset/memory file"):
        tree.kubepods.read("pids.max")


def test_close_kills_placed_processes_and_removes_every_directory() -> None:
    child = subprocess.Popen(["sleep", "30"])
    tree = build_tree(PODS, 2000, NODE_MEMORY)
    made = [path.parent for path in tree.kubepods.paths.values()]
    assert all(d.is_dir() for d in made)
    tree.place("batch", "hog", child.pid)
    tree.close()
    assert child.wait(timeout=5) == -9  # killed, and left for its parent to reap
    assert not any(d.exists() for d in made)


def test_close_leaves_alone_a_pid_that_is_no_longer_in_the_tree() -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        with build_tree(PODS, 2000, NODE_MEMORY) as other:
            tree = build_tree(PODS, 2000, NODE_MEMORY)
            tree.place("batch", "hog", bystander.pid)
            # It moves on (as a reused PID would be elsewhere): closing `tree` must spare it.
            other.place("batch", "hog", bystander.pid)
            tree.close()
            assert bystander.poll() is None
        assert bystander.wait(timeout=5) == -9  # `other` placed it last, and killed it
    finally:
        bystander.kill()
        bystander.wait()


def test_a_failed_build_is_one_line_and_removes_what_it_created() -> None:
    bad = replace(BESTEFFORT, name="bad", uid="not/a/uid")
    with build_tree([], 2000, NODE_MEMORY) as probe:
        parents = [path.parent.parent for path in probe.kubepods.paths.values()]
    before = {p for d in parents for p in d.glob("colocd-test-*")}
    with pytest.raises(TreeError, match=r"^build tree .*not a UUID") as info:
        build_tree([BURSTABLE, bad], 2000, NODE_MEMORY)
    assert "\n" not in str(info.value)
    assert {p for d in parents for p in d.glob("colocd-test-*")} == before
