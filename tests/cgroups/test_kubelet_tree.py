"""lab.kubelet_tree builds a kubelet-like tree on the real kernel and removes all of it."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from isolation.detect import Hierarchy, detect_layout
from isolation.layout import Driver, Runtime
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod, Resources

pytestmark = pytest.mark.cgroup_v1


def burstable(name: str = "web") -> Pod:
    res = Resources({"cpu": Decimal("0.5"), "memory": Decimal(2**28)}, {"cpu": Decimal(1)})
    return Pod("shop", name, containers=(Container("app", res), Container("sidecar")))


def besteffort(name: str = "batch") -> Pod:
    return Pod("jobs", name, containers=(Container("work"),))


def test_pod_and_container_cgroups_carry_kubelet_values(tree: KubeletTree) -> None:
    pod = tree.add_pod(burstable())
    assert set(pod.container_ids) == {"app", "sidecar"}
    app = tree.container_cgroup(pod, "app")
    for directory in tree.cgroups.dirs(app).values():
        assert directory.is_dir()
    assert tree.cgroups.read("cpu.shares", app).value == 512
    assert tree.cgroups.read("cpu.max", app).value.quota_us == 100_000
    assert tree.cgroups.read("cpu.shares", tree.container_cgroup(pod, "sidecar")).value == 2
    pod_cg = tree.pod_cgroup(pod)
    assert tree.cgroups.read("cpu.shares", pod_cg).value == 512
    # Not every container has a CPU limit, so the pod level has no quota (as kubelet).
    assert tree.cgroups.read("cpu.max", pod_cg).value.quota_us is None
    be = tree.add_pod(besteffort())
    assert tree.cgroups.read("cpu.shares", tree.pod_cgroup(be)).value == 2


def test_names_follow_the_driver_and_runtime(hierarchy: Hierarchy) -> None:
    with KubeletTree(Driver.SYSTEMD, Runtime.DOCKER, hierarchy=hierarchy) as tree:
        pod = tree.add_pod(burstable())
        cid = pod.container_ids["app"].id
        uid = pod.uid.replace("-", "_")
        assert tree.container_cgroup(pod, "app") == (
            f"{tree.root}/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{uid}.slice/docker-{cid}.scope"
        )
        assert detect_layout(hierarchy, tree.root).driver is Driver.SYSTEMD
    with KubeletTree(Driver.CGROUPFS, Runtime.CRIO, hierarchy=hierarchy) as tree:
        pod = tree.add_pod(besteffort())
        cid = pod.container_ids["work"].id
        assert tree.container_cgroup(pod, "work") == (
            f"{tree.root}/kubepods/besteffort/pod{pod.uid}/crio-{cid}"
        )


def test_close_kills_owned_processes_and_removes_everything(hierarchy: Hierarchy) -> None:
    tree = KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy)
    tree.open()
    made = [m / tree.root for m in hierarchy.mounts().values()]
    pod = tree.add_pod(burstable())
    proc = tree.spawn(pod, "app", [sys.executable, "-c", "import time; time.sleep(60)"])
    app = tree.container_cgroup(pod, "app")
    deadline = time.monotonic() + 5
    procs = Path(tree.cgroups.dirs(app)["memory"], "cgroup.procs")
    while str(proc.pid) not in procs.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert str(proc.pid) in procs.read_text().split()
    tree.cgroups.write("freeze", app, True)  # a frozen task must still be killed
    tree.close()
    assert proc.returncode is not None
    assert not any(path.exists() for path in made)


def test_hybrid_mirrors_pods_into_the_cgroup2_mount(tree: KubeletTree) -> None:
    if tree.hierarchy.unified is None:
        pytest.skip("no cgroup2 mount on this host")
    pod = tree.add_pod(burstable())
    assert (tree.hierarchy.unified / tree.pod_cgroup(pod) / "cpu.pressure").exists()


def test_an_attached_process_is_owned_and_killed_on_close(hierarchy: Hierarchy) -> None:
    owned = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
            pod = tree.add_pod(besteffort())
            cg = tree.container_cgroup(pod, "work")
            tree.attach(owned.pid, cg)
            procs = Path(tree.cgroups.dirs(cg)["cpu"], "cgroup.procs").read_text().split()
            assert str(owned.pid) in procs
            started = time.monotonic()
        # Killed, and its zombie (our child, not the tree's) did not hold close() up.
        assert time.monotonic() - started < 5
        assert owned.wait(timeout=5) == -9
    finally:
        owned.kill()
        owned.wait()
