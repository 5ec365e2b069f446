"""`colocd run` under systemd's Type=notify: READY=1 after the first tick, WATCHDOG=1 each
tick, STOPPING=1 on the way out, on a real datagram socket named by $NOTIFY_SOCKET."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from agent.cli import main
from isolation.detect import Hierarchy
from isolation.layout import Driver
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod, Resources

pytestmark = pytest.mark.cgroup_v1


@pytest.fixture
def tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as t:
        yield t


def _received(sock: socket.socket) -> list[bytes]:
    messages = []
    sock.setblocking(False)
    while True:
        try:
            messages.append(sock.recv(4096))
        except BlockingIOError:
            return messages


def test_one_tick_notifies_ready_watchdog_and_stopping(
    tree: KubeletTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    web = Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))
    tree.write_manifest(tree.add_pod(web), pods)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
        argv = ["run", "--pods", str(pods), "--kubelet-cgroup-root", tree.root, "--once"]
        assert main([*argv, "--dry-run", "--state-dir", str(tmp_path / "state")]) == 0
        messages = _received(sock)
    assert messages[0].startswith(b"READY=1\nSTATUS=ticking every ")
    assert messages[1:] == [b"WATCHDOG=1", b"STOPPING=1"]


def test_without_notify_socket_nothing_is_sent(
    tree: KubeletTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    pods = tmp_path / "pods"
    pods.mkdir()
    argv = ["run", "--pods", str(pods), "--kubelet-cgroup-root", tree.root, "--once"]
    assert main([*argv, "--dry-run", "--state-dir", str(tmp_path / "state")]) == 0
