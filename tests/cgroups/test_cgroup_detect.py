"""Detection of the hierarchy (from mountinfo) and of kubelet's layout (from the real tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from isolation.detect import Hierarchy, Mode, detect_hierarchy, detect_layout
from isolation.errors import DetectionError
from isolation.layout import Driver, KubeletLayout
from lab.kubelet_tree import KubeletTree

# Lines as the kernel writes them; only cgroup/cgroup2 mounts at or below the root count.
HYBRID = """\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:33 / /mnt/other\\040cg rw - cgroup cgroup rw,pids
"""


def proc_with(tmp_path: Path, mountinfo: str) -> str:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(mountinfo)
    return str(tmp_path)


def test_hybrid_mountinfo_with_co_mounted_controllers(tmp_path: Path) -> None:
    h = detect_hierarchy("/sys/fs/cgroup", proc_with(tmp_path, HYBRID))
    assert h.mode is Mode.HYBRID
    assert h.v1["cpu"] == h.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert h.unified == Path("/sys/fs/cgroup/unified")
    assert "pids" not in h.v1  # mounted elsewhere, outside the cgroup root


def test_no_cgroup_mount_says_where_it_looked(tmp_path: Path) -> None:
    proc = proc_with(tmp_path, HYBRID)
    with pytest.raises(DetectionError, match=r"no cgroup or cgroup2 mount at or below /srv in"):
        detect_hierarchy("/srv", proc)


def test_cgroup2_below_the_root_names_the_right_root(tmp_path: Path) -> None:
    mountinfo = "32 31 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    with pytest.raises(DetectionError, match="pass --cgroup-root /sys/fs/cgroup/unified"):
        detect_hierarchy("/sys/fs/cgroup", proc_with(tmp_path, mountinfo))


def test_unreadable_mountinfo_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="cannot read"):
        detect_hierarchy("/sys/fs/cgroup", str(tmp_path))


@pytest.mark.cgroup_v1
def test_this_host_enforces_with_v1(hierarchy: Hierarchy) -> None:
    assert hierarchy.mode in (Mode.V1, Mode.HYBRID)
    assert hierarchy.version == 1
    for controller in ("cpu", "cpuacct", "memory", "cpuset", "freezer", "pids"):
        assert (hierarchy.v1[controller] / "cgroup.procs").exists()


@pytest.mark.cgroup_v2
def test_this_host_is_pure_v2(hierarchy: Hierarchy) -> None:
    assert hierarchy.mode is Mode.V2
    assert {"cpu", "memory", "pids"} <= hierarchy.v2_controllers
    assert hierarchy.unified == hierarchy.root


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2
def test_layout_is_read_from_the_tree(tree: KubeletTree) -> None:
    h = tree.hierarchy
    assert detect_layout(h, tree.root) == tree.layout
    # Autodetection below the test's own directory finds exactly this tree.
    assert detect_layout(h, search_base=tree.root) == tree.layout


@pytest.mark.cgroup_v1
def test_two_kubelet_trees_are_ambiguous(hierarchy: Hierarchy) -> None:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as a:
        base = a.root
        # A second kubelet tree, systemd-named, beside the first under the same base.
        other = KubeletLayout(Driver.SYSTEMD, base).kubepods()
        for mount in hierarchy.mounts().values():
            (mount / other).mkdir()
        try:
            with pytest.raises(DetectionError, match="both of"):
                detect_layout(hierarchy, base)
            with pytest.raises(DetectionError, match="2 kubelet trees"):
                detect_layout(hierarchy, search_base=base)
        finally:
            for mount in hierarchy.mounts().values():
                (mount / other).rmdir()


@pytest.mark.cgroup_v1
def test_missing_kubelet_root_says_what_was_looked_for(tree: KubeletTree) -> None:
    with pytest.raises(DetectionError, match="does not exist"):
        detect_layout(tree.hierarchy, tree.root + "/nope")
    with pytest.raises(DetectionError, match=r"no kubepods or \*kubepods.slice directory"):
        detect_layout(tree.hierarchy, search_base=tree.layout.kubepods())
