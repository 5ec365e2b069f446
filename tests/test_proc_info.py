"""isolation.proc_info on a /proc laid out in a directory: a process's cgroup (v1 and v2), one
environment variable, and whether its own /dev holds an NVIDIA device node."""

from __future__ import annotations

from pathlib import Path

from isolation.detect import Hierarchy, Mode
from isolation.proc_info import cgroup_of, device_node_visible, env_of

V1 = Hierarchy(Mode.HYBRID, Path("/sys/fs/cgroup"), {"cpu": Path("/sys/fs/cgroup/cpu")})
V2 = Hierarchy(Mode.V2, Path("/sys/fs/cgroup"), {}, Path("/sys/fs/cgroup"))


def proc(tmp_path: Path, pid: str, cgroup: str = "", environ: bytes = b"") -> Path:
    d = tmp_path / pid
    (d / "ns").mkdir(parents=True)
    (d / "ns" / "mnt").write_text(pid)  # its own inode: its own mount namespace
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(environ)
    return d


def test_the_cgroup_line_of_each_version(tmp_path: Path) -> None:
    lines = "12:freezer:/kubepods/besteffort/podA/c1\n4:cpu,cpuacct:/kubepods/podB/c2\n0::/x/y\n"
    proc(tmp_path, "7", lines)
    root = str(tmp_path)
    assert cgroup_of(7, V1, root) == "kubepods/podB/c2"
    assert cgroup_of(7, V1, root, "freezer") == "kubepods/besteffort/podA/c1"
    assert cgroup_of(7, V2, root) == "x/y"
    assert cgroup_of(8, V2, root) is None  # gone


def test_one_environment_variable_or_none(tmp_path: Path) -> None:
    proc(tmp_path, "7", environ=b"PATH=/bin\0NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2\0")
    proc(tmp_path, "8", environ=b"PATH=/bin\0")
    root = str(tmp_path)
    assert env_of(7, "NVIDIA_VISIBLE_DEVICES", root) == "GPU-1,GPU-2"
    assert env_of(8, "NVIDIA_VISIBLE_DEVICES", root) is None
    assert env_of(9, "NVIDIA_VISIBLE_DEVICES", root) is None  # unreadable


def test_the_device_node_in_the_containers_own_dev(tmp_path: Path) -> None:
    proc(tmp_path, "self")
    given = proc(tmp_path, "7")
    (given / "root" / "dev").mkdir(parents=True)
    (given / "root" / "dev" / "nvidia1").touch()
    root = str(tmp_path)
    assert device_node_visible(7, 1, root) is True
    assert device_node_visible(7, 0, root) is False
    # The agent's own mount namespace: the host's /dev says nothing about a container.
    (tmp_path / "8").symlink_to(tmp_path / "self")
    assert device_node_visible(8, 0, root) is None
