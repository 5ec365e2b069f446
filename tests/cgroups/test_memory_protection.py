"""Memory protection the kernel honours (cgroup v2, in the VM of tests/vm).

An online pod holds page cache it has read once; a batch hog then grows to the kubepods
limit. Anonymous memory cannot be reclaimed here (no swap), so kubepods' reclaim takes page
cache, and only memory.min that every ancestor up to kubepods carries keeps the kernel off
the online pod's: cgroup-v2.rst bounds a cgroup's effective protection by its parent's. Three
runs, each in a fresh tree: no protection at all; memory.min on the pod alone (what colocd
wrote before); and one tick of colocd's loop (the pod, burstable and kubepods).

The page cache must live on a real filesystem (tmpfs pages are swap-backed, never dropped
as cache): an ext4 image on a loop device, made and removed here.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from isolation.detect import Hierarchy
from lab.kubelet_tree import KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import Container, Pod, Resources
from qos.settings import QosSettings
from qos.state import NodeCapacity
from tests.loop_device import loop_unavailable
from tests.tree_loop import tree_loop

pytestmark = pytest.mark.cgroup_v2

MIB = 1 << 20
LIMIT = 384 * MIB  # kubepods' memory.max (kubelet's node allocatable)
CACHE = 128 * MIB  # what the online pod reads once
REQUEST = 160 * MIB  # the online pod's memory request (colocd protects it whole here)
HOG = 320 * MIB  # batch's anonymous memory: fits under LIMIT only if online's cache goes

READER = (
    "import os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "while os.read(fd, 1 << 20): pass\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)
HOG_CODE = (
    "import sys, time\n"
    "b = bytearray(int(sys.argv[1])); b[::4096] = b'x' * (len(b) // 4096)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A CACHE-sized file on ext4 (a loop device), not yet in anyone's page cache."""
    work = tmp_path_factory.mktemp("ext4")
    image, mnt = work / "image", work / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(CACHE + 64 * MIB)
    _run("mkfs.ext4", "-q", "-F", str(image))
    if (missing := loop_unavailable()) is not None:
        pytest.fail(missing)  # the VM has loop (modprobe); a skip would hide the v2 check
    _run("mount", "-o", "loop", str(image), str(mnt))
    try:
        data = mnt / "data"
        with open(data, "wb") as f:
            f.write(b"x" * CACHE)
        yield data
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


def _drop(path: Path) -> None:
    """Out of the page cache, so the online pod's read charges it there."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _ready(proc: subprocess.Popen[str], timeout: float) -> bool:
    """True when `proc` printed `ready`; False when it died first (the OOM killer)."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    if not readable:
        raise AssertionError(f"pid {proc.pid}: neither ready nor gone in {timeout}s")
    return proc.stdout.readline() == "ready\n"


def _file_bytes(tree: KubeletTree, cgroup: str) -> int:
    assert tree.hierarchy.unified is not None
    stat = (tree.hierarchy.unified / cgroup / "memory.stat").read_text()
    return next(int(v) for k, v in (line.split() for line in stat.splitlines()) if k == "file")


def _colocd_tick(tree: KubeletTree, online: Pod, work: Path) -> None:
    """One tick of the real loop, online pods protected up to their whole request. Node
    memory is set large, so the batch limits it plans sit above kubepods' own limit and
    protection alone decides."""
    pods = work / "pods"
    pods.mkdir()
    tree.write_manifest(online, pods)
    brain = QosSettings.model_validate({"memory": {"online_min_fraction": 1.0}})
    capacity = NodeCapacity(1000, 8 << 30)
    loop = tree_loop(tree, pods, work / "state", brain, capacity, revert_on_exit=False)
    loop.prime()
    result = loop.tick()
    loop.close()  # not configured to revert: the settings stay
    assert result is not None and result.report is not None and not result.report.failed
    for cgroup in (tree.layout.qos_cgroup(QOSClass.BURSTABLE), tree.layout.kubepods()):
        assert tree.cgroups.read("memory.min", cgroup).value >= REQUEST


def _survives(
    hierarchy: Hierarchy, cache_file: Path, work: Path, protection: str
) -> tuple[int, int, bool]:
    """(online's cache before, after the hog, whether the hog got all it asked for)."""
    with KubeletTree(hierarchy=hierarchy) as tree:
        tree.cgroups.write("memory.max", tree.layout.kubepods(), LIMIT)
        res = Resources({"cpu": Decimal("0.1"), "memory": Decimal(REQUEST)})
        online = tree.add_pod(Pod("shop", "web", containers=(Container("app", res),)))
        _drop(cache_file)
        reader = tree.spawn(
            online,
            "app",
            [sys.executable, "-c", READER, str(cache_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert _ready(reader, 120)
        pod = tree.pod_cgroup(online)
        time.sleep(2.5)  # memory.stat is flushed every ~2 s
        before = _file_bytes(tree, pod)
        assert before >= CACHE * 0.9, before
        if protection == "pod only":
            tree.cgroups.write("memory.min", pod, REQUEST)
        elif protection == "colocd":
            _colocd_tick(tree, online, work)
        batch = tree.add_pod(Pod("jobs", "hog", containers=(Container("mem"),)))
        hog = tree.spawn(
            batch,
            "mem",
            [sys.executable, "-c", HOG_CODE, str(HOG)],
            stdout=subprocess.PIPE,
            text=True,
        )
        fitted = _ready(hog, 300)
        time.sleep(2.5)
        return before, _file_bytes(tree, pod), fitted


def test_online_page_cache_survives_a_batch_hog_only_with_protection_on_every_ancestor(
    hierarchy: Hierarchy, cache_file: Path, tmp_path: Path
) -> None:
    figures = {}
    for protection in ("none", "pod only", "colocd"):
        work = tmp_path / protection.replace(" ", "-")
        work.mkdir()
        figures[protection] = _survives(hierarchy, cache_file, work, protection)
    print(
        "online page cache before -> after a batch hog at the kubepods limit: "
        + "; ".join(f"{k} {b / MIB:.0f} -> {a / MIB:.0f} MiB" for k, (b, a, _) in figures.items())
    )
    none_before, none_after, none_fitted = figures["none"]
    assert none_fitted and none_after < none_before / 2, figures  # batch took the cache
    pod_before, pod_after, _ = figures["pod only"]
    assert pod_after < pod_before / 2, figures  # the pod's memory.min alone is not honoured
    before, after, fitted = figures["colocd"]
    assert after >= before * 0.9, figures  # protected: the hog met the limit instead
    assert not fitted, figures
