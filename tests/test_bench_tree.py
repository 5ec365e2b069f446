"""benchmarks/_tree.py on the host's real cgroup v1: kubelet's layout and values, safe teardown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks._harness import pod
from benchmarks._tree import build_tree, milli_to_shares, own_cgroups
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


@pytest.mark.parametrize(
    ("milli", "shares"), [(0, 2), (1, 2), (500, 512), (1000, 1024), (2000, 2048)]
)
def test_milli_to_shares_is_kubelets(milli: int, shares: int) -> None:
    assert milli_to_shares(milli) == shares


def test_v2_only_host_is_refused_with_one_line(tmp_path: Path) -> None:
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/user.slice\n")
    with pytest.raises(TreeError, match=r"^find cgroup v1 controllers cpu,cpuacct,cpuset,memory"):
        own_cgroups(proc_cgroup, tmp_path)


def test_pods_need_a_uid() -> None:
    from dataclasses import replace

    with pytest.raises(TreeError, match="every pod needs a uid"):
        build_tree([replace(BESTEFFORT, uid="")], 2000, NODE_MEMORY)


def _has_cap_sys_resource() -> bool:
    status = Path("/proc/self/status").read_text()
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> CAP_SYS_RESOURCE & 1)


def _tree_dirs(top: str) -> list[Path]:
    own = own_cgroups(Path("/proc/self/cgroup"), Path("/sys/fs/cgroup"))
    return [path / top for path in own.values()]


@pytest.mark.cgroup_v1
@requires_cgroup_v1
class TestOnRealCgroups:
    @pytest.fixture
    def tree(self):
        with build_tree(PODS, 2000, NODE_MEMORY) as tree:
            yield tree

    @pytest.mark.parametrize(
        ("level", "shares", "quota", "memory"),
        [
            ("kubepods", 2048, -1, NODE_MEMORY),
            ("burstable", 614, -1, UNLIMITED),  # 500m + 100m of requests
            ("besteffort", 2, -1, UNLIMITED),
            ("pod:db", 1024, 100_000, 256 * MIB),
            ("pod:web", 614, -1, UNLIMITED),  # one container has no cpu limit
            ("container:web/sidecar", 102, 20_000, UNLIMITED),
            ("container:web/app", 512, -1, UNLIMITED),
            ("pod:batch", 2, -1, UNLIMITED),
            ("container:batch/hog", 2, -1, UNLIMITED),
        ],
    )
    def test_kubelet_values(self, tree, level: str, shares: int, quota: int, memory: int):
        levels = {
            "kubepods": tree.kubepods,
            "burstable": tree.qos(QOSClass.BURSTABLE),
            "besteffort": tree.qos(QOSClass.BEST_EFFORT),
        }
        kind, _, name = level.partition(":")
        if kind == "pod":
            d = tree.pod(name)
        elif kind == "container":
            d = tree.container(*name.split("/"))
        else:
            d = levels[level]
        assert int(d.read("cpu.shares")) == shares
        assert int(d.read("cpu.cfs_quota_us")) == quota
        assert int(d.read("memory.limit_in_bytes")) == memory

    def test_layout_nests_under_our_own_cgroups(self, tree) -> None:
        own = own_cgroups(Path("/proc/self/cgroup"), Path("/sys/fs/cgroup"))
        assert tree.top.startswith("colocd-bench-")
        web = tree.pod("web").paths
        for controller, base in own.items():
            assert web[controller] == base / tree.top / "kubepods" / "burstable" / "podbench-web"
        assert tree.pod("db").paths["cpu"].parent.name == "kubepods"  # Guaranteed: no QoS dir
        # The private top dir stands where kubepods would: it gets kubepods' weight.
        assert (tree.kubepods.paths["cpu"].parent / "cpu.shares").read_text().strip() == "2048"
        assert tree.qos(QOSClass.GUARANTEED) == tree.kubepods

    @pytest.mark.parametrize(
        ("pod_name", "container", "oom_score_adj"),
        [("web", "app", 500), ("batch", "hog", 1000)],
    )
    def test_place_moves_the_pid_everywhere_with_kubelets_oom_score(
        self, tree, pod_name: str, container: str, oom_score_adj: int
    ) -> None:
        child = subprocess.Popen(["sleep", "30"])
        try:
            tree.place(pod_name, container, child.pid)
            lines = Path(f"/proc/{child.pid}/cgroup").read_text().splitlines()
            where = {
                c: p for _, cs, p in (line.split(":", 2) for line in lines) for c in cs.split(",")
            }
            leaf = tree.container(pod_name, container).paths
            for controller in ("cpu", "cpuacct", "cpuset", "memory"):
                assert where[controller].endswith(leaf[controller].name)
                assert f"/{tree.top}/" in where[controller]
            assert int(Path(f"/proc/{child.pid}/oom_score_adj").read_text()) == oom_score_adj
        finally:
            child.kill()
            child.wait()

    def test_guaranteed_gets_minus_997_or_a_clear_error_without_cap_sys_resource(self, tree):
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

    def test_unknown_level_and_foreign_file_are_one_line_errors(self, tree) -> None:
        with pytest.raises(TreeError, match="no such level"):
            tree.pod("nope")
        with pytest.raises(TreeError, match="not a cpu/cpuacct/cpuset/memory file"):
            tree.kubepods.read("pids.max")


@pytest.mark.cgroup_v1
@requires_cgroup_v1
def test_close_kills_placed_processes_and_removes_every_directory() -> None:
    child = subprocess.Popen(["sleep", "30"])
    tree = build_tree(PODS, 2000, NODE_MEMORY)
    top = tree.top
    assert all(d.is_dir() for d in _tree_dirs(top))
    tree.place("batch", "hog", child.pid)
    tree.close()
    assert child.wait(timeout=5) == -9  # killed, and left for its parent to reap
    assert not any(d.exists() for d in _tree_dirs(top))


@pytest.mark.cgroup_v1
@requires_cgroup_v1
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


@pytest.mark.cgroup_v1
@requires_cgroup_v1
def test_a_failed_build_removes_what_it_created() -> None:
    from dataclasses import replace

    twin = replace(BURSTABLE, name="web-twin")  # same uid: pod<uid> exists already
    before = {p for d in _tree_dirs("") for p in d.glob("colocd-bench-*")}
    with pytest.raises(TreeError, match=r"^create cgroup .*podbench-web: File exists"):
        build_tree([BURSTABLE, twin], 2000, NODE_MEMORY)
    after = {p for d in _tree_dirs("") for p in d.glob("colocd-bench-*")}
    assert after == before
