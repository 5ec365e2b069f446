"""agent.report.sdnotify against real unix datagram sockets (path and abstract), as systemd does."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError, NotifyError
from agent.report.sdnotify import SdNotifier, watchdog_interval_s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def test_ready_with_status_is_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.ready("watching 3 pods") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 3 pods"


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (SdNotifier.watchdog, b"WATCHDOG=1"),
        (SdNotifier.stopping, b"STOPPING=1"),
        (lambda n: n.status("tick 42"), b"STATUS=tick 42"),
    ],
)
def test_each_message(listener: tuple[socket.socket, str], send, expected: bytes) -> None:
    sock, path = listener
    assert send(SdNotifier(path)) is True
    assert sock.recv(4096) == expected


def test_abstract_socket_name() -> None:
    name = f"colocd-test-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert SdNotifier(f"@{name}").watchdog() is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_socket_every_call_is_a_no_op() -> None:
    notifier = SdNotifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_unreachable_socket_is_logged_and_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "gone.sock"
    with caplog.at_level(logging.WARNING, logger="agent.report.sdnotify"):
        assert SdNotifier(str(missing)).watchdog() is False
    assert [r.getMessage() for r in caplog.records] == [
        f"notify systemd at {missing}: No such file or directory"
    ]


@pytest.mark.parametrize("bad", ["relative.sock", "tcp://x"])
def test_socket_must_be_absolute_or_abstract(bad: str) -> None:
    with pytest.raises(NotifyError, match="not an absolute path"):
        SdNotifier(bad)


def test_message_must_be_key_value_lines(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    with pytest.raises(NotifyError, match="not one KEY=value line"):
        SdNotifier(path).notify("READY=1\nWATCHDOG=1")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
    ],
)
def test_watchdog_interval_is_half_the_timeout(environ: dict[str, str], expected) -> None:
    assert watchdog_interval_s(environ) == expected


@pytest.mark.parametrize("usec", ["soon", "0", "-5"])
def test_bad_watchdog_usec_is_an_error(usec: str) -> None:
    with pytest.raises(NotifyError, match="WATCHDOG_USEC"):
        watchdog_interval_s({"WATCHDOG_USEC": usec})


@pytest.mark.parametrize(
    ("environ", "overrides", "expected"),
    [
        ({}, {}, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, {}, "/run/systemd/notify"),
        ({"NOTIFY_SOCKET": "@sd"}, {}, "@sd"),
        ({"NOTIFY_SOCKET": "/a"}, {"agent": {"notify_socket": "/b"}}, "/b"),  # settings win
    ],
)
def test_settings_take_the_socket_from_the_environment(environ, overrides, expected) -> None:
    settings = config.load(
        None, {"agent": {"node_name": "n1", **overrides.get("agent", {})}}, environ
    )
    assert settings.agent.notify_socket == expected


def test_a_relative_notify_socket_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="notify_socket"):
        config.load(None, {"agent": {"node_name": "n1"}}, {"NOTIFY_SOCKET": "notify.sock"})
