"""Kubelet's and the runtimes' cgroup names, and the grammar that keeps hostile names out."""

from __future__ import annotations

import pytest

from isolation.errors import UnsafeNameError
from isolation.layout import (
    Driver,
    KubeletLayout,
    Runtime,
    check_container_id,
    check_pod_uid,
    normalize_cgroup,
)
from qos.k8s_qos import QOSClass

UID = "3f1c2a8e-6b0d-4c1e-9a57-2f4b8d0c6e11"
U_ = UID.replace("-", "_")
CID = "a" * 64

POD_PATHS = [
    (Driver.CGROUPFS, "", QOSClass.GUARANTEED, f"kubepods/pod{UID}"),
    (Driver.CGROUPFS, "", QOSClass.BURSTABLE, f"kubepods/burstable/pod{UID}"),
    (Driver.CGROUPFS, "/custom/root", QOSClass.BEST_EFFORT,
     f"custom/root/kubepods/besteffort/pod{UID}"),
    (Driver.SYSTEMD, "/", QOSClass.GUARANTEED, f"kubepods.slice/kubepods-pod{U_}.slice"),
    (Driver.SYSTEMD, "", QOSClass.BURSTABLE,
     f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice"),
    # A slice root prefixes its children's names, as systemd's slice nesting does.
    (Driver.SYSTEMD, "/kube.slice", QOSClass.BEST_EFFORT,
     f"kube.slice/kube-kubepods.slice/kube-kubepods-besteffort.slice/"
     f"kube-kubepods-besteffort-pod{U_}.slice"),
    (Driver.SYSTEMD, "/a/b", QOSClass.BURSTABLE,
     f"a/b/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice"),
]  # fmt: skip


@pytest.mark.parametrize(("driver", "root", "qos", "expected"), POD_PATHS)
def test_pod_cgroup_names(driver: Driver, root: str, qos: QOSClass, expected: str) -> None:
    assert KubeletLayout(driver, root).pod_cgroup(qos, UID) == expected


CONTAINER_NAMES = [
    (Driver.CGROUPFS, Runtime.CONTAINERD, CID),
    (Driver.CGROUPFS, Runtime.CRIO, f"crio-{CID}"),
    (Driver.CGROUPFS, Runtime.DOCKER, CID),
    (Driver.SYSTEMD, Runtime.CONTAINERD, f"cri-containerd-{CID}.scope"),
    (Driver.SYSTEMD, Runtime.CRIO, f"crio-{CID}.scope"),
    (Driver.SYSTEMD, Runtime.DOCKER, f"docker-{CID}.scope"),
]


@pytest.mark.parametrize(("driver", "runtime", "expected"), CONTAINER_NAMES)
def test_container_names(driver: Driver, runtime: Runtime, expected: str) -> None:
    assert KubeletLayout(driver).container_name(runtime, CID) == expected


def test_unknown_runtime_tries_every_naming() -> None:
    names = KubeletLayout(Driver.SYSTEMD).container_candidates(None, CID)
    assert names == (f"cri-containerd-{CID}.scope", f"crio-{CID}.scope", f"docker-{CID}.scope")


HOSTILE_UIDS = ["../../../etc", "a/b", "..", "", "3f1c2a8e-6b0d-4c1e-9a57-2f4b8d0c6e1/",
                "3F1C2A8E-6B0D-4C1E-9A57-2F4B8D0C6E11/..", "pod\n", "x" * 32]  # fmt: skip
HOSTILE_IDS = ["../" + "a" * 61, "a" * 63 + "/", "..", "", "g" * 64, "a" * 65, "abc"]


@pytest.mark.parametrize("uid", HOSTILE_UIDS)
def test_hostile_pod_uids_are_refused(uid: str) -> None:
    with pytest.raises(UnsafeNameError, match="pod UID"):
        check_pod_uid(uid)
    with pytest.raises(UnsafeNameError):
        KubeletLayout(Driver.CGROUPFS).pod_cgroup(QOSClass.BURSTABLE, uid)


@pytest.mark.parametrize("cid", HOSTILE_IDS)
def test_hostile_container_ids_are_refused(cid: str) -> None:
    with pytest.raises(UnsafeNameError, match="container ID"):
        check_container_id(cid)


def test_static_pod_uids_are_accepted() -> None:
    assert check_pod_uid("0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", ""),
        ("", ""),
        ("/a/b/", "a/b"),
        ("kubepods.slice/x-y_z.scope", "kubepods.slice/x-y_z.scope"),
    ],
)
def test_cgroup_paths_are_normalized(path: str, expected: str) -> None:
    assert normalize_cgroup(path) == expected


@pytest.mark.parametrize("path", ["a/../b", "..", "a/./b", "a//b", "a/b c", "-x", "a/\x00"])
def test_cgroup_paths_outside_the_grammar_are_refused(path: str) -> None:
    with pytest.raises(UnsafeNameError, match="cgroup path"):
        normalize_cgroup(path)
