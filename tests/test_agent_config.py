"""agent.config: one frozen Settings from a file, flags laid over it, and NODE_NAME."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import Settings, load, parse_address
from agent.errors import ConfigError
from qos.settings import CpuMechanism


def test_defaults_need_no_file_and_take_the_node_name_from_the_environment() -> None:
    s = load(None, {}, {"NODE_NAME": "node-7"})
    assert s.agent.node_name == "node-7"
    assert s.agent.tick_s == 1.0
    assert s.agent.fast_path.enabled
    assert s.qos.cpu.mechanism is CpuMechanism.AUTO


def test_a_bare_host_without_node_name_uses_the_host_name(tmp_path: Path) -> None:
    s = load(None, {"agent": {"pods_dir": str(tmp_path)}}, {})
    assert s.agent.node_name == socket.gethostname()


def test_on_kubernetes_the_node_name_is_required() -> None:
    with pytest.raises(ConfigError, match="pass --node-name or set NODE_NAME"):
        load(None, {}, {})


def test_flags_win_over_the_file_and_unset_flags_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "colocd.yaml"
    path.write_text(
        "agent:\n  tick_s: 2\n  node_name: from-file\nqos:\n  reclaim:\n    cpu_max_fraction: 0.8\n"
    )
    flags = {"agent": {"tick_s": 0.5, "node_name": None, "fast_path": {"enabled": None}}}
    s = load(str(path), flags, {"NODE_NAME": "from-env"})
    assert s.agent.tick_s == 0.5
    assert s.agent.node_name == "from-file"
    assert s.agent.fast_path.enabled
    assert s.qos.reclaim.cpu_max_fraction == 0.8


def test_the_state_dir_holds_the_journal_unless_isolation_names_its_own(tmp_path: Path) -> None:
    s = load(None, {"agent": {"state_dir": str(tmp_path)}}, {"NODE_NAME": "n"})
    assert s.isolation.state_dir == tmp_path == s.agent.state_dir
    other = tmp_path / "journal"
    flags = {"agent": {"state_dir": str(tmp_path)}, "isolation": {"state_dir": other}}
    s = load(None, flags, {"NODE_NAME": "n"})
    assert s.isolation.state_dir == other


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"agent": {"tick_s": 0}}', "agent.tick_s: Input should be greater than or equal to 0.1"),
        # A floor, so --tick 1e-9 cannot busy-loop a core (issue 11).
        ('{"agent": {"tick_s": 1e-9}}', "agent.tick_s: Input should be greater than or equal"),
        ('{"agent": {"tick": 1}}', "agent.tick: Extra inputs are not permitted"),
        ('{"agent": {"metrics_addr": "9464"}}', "agent.metrics_addr: Value error, '9464' is not"),
        ('{"agent": {"node_cgroup": "../x"}}', "agent.node_cgroup: Value error, use cgroup path"),
        ('{"qos": {"cpu": {"mechanism": "magic"}}}', "qos.cpu.mechanism: Input should be"),
        ("[1, 2]", "expected a mapping of settings"),
        ("agent: [", "not YAML or JSON"),
    ],
)
def test_bad_settings_fail_with_one_line_naming_the_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load(str(path), {}, {"NODE_NAME": "n"})
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"load config .*: No such file"):
        load(str(tmp_path / "absent.yaml"), {}, {"NODE_NAME": "n"})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.agent.tick_s = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9464", "host:", "host:http", "h:70000"])
def test_bad_metrics_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_address(text)


def test_a_json_config_file_works_too(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"agent": {"fast_path": {"interval_s": 0.02}}}))
    assert load(str(path), {}, {"NODE_NAME": "n"}).agent.fast_path.interval_s == 0.02
