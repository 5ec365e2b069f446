"""systemd/colocd.service: systemd's own checker accepts it, and it stays hardened.

`systemd-analyze verify` needs ExecStart's binary to exist, so a copy with ExecStart
pointing at this environment's `colocd` is verified; the rest of the unit is unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import AgentSettings

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "colocd.service"
ENV_FILE = ROOT / "systemd" / "colocd.env"
INSTALLED_COLOCD = "/usr/local/bin/colocd"
MAX_EXPOSURE = 35  # systemd-analyze security's scale: 0 (locked down) .. 100 (exposed)
NEEDED_CAPABILITIES = {"CAP_NET_ADMIN", "CAP_KILL", "CAP_SYS_RESOURCE"}

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _venv_colocd() -> Path:
    return Path(sys.executable).parent / "colocd"


def _copy_for_here(tmp_path: Path, extra: str = "") -> Path:
    if not _venv_colocd().exists():
        pytest.skip(f"no colocd command next to {sys.executable} (run make install)")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_COLOCD} " in text
    text = text.replace(f"ExecStart={INSTALLED_COLOCD} ", f"ExecStart={_venv_colocd()} ")
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    copy = tmp_path / "colocd.service"
    copy.write_text(text)
    return copy


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = _analyze("verify", str(_copy_for_here(tmp_path)))
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if "colocd.service" in line]
    assert complaints == []


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: systemd flags a misspelt directive in the same unit."""
    result = _analyze("verify", str(_copy_for_here(tmp_path, extra="NoNewPrivilege=yes\n")))
    assert "Unknown key" in result.stderr and "NoNewPrivilege" in result.stderr


@needs_analyze
def test_exposure_score_stays_low(tmp_path: Path) -> None:
    copy = _copy_for_here(tmp_path)
    result = _analyze("security", "--offline=true", f"--threshold={MAX_EXPOSURE}", str(copy))
    overall = re.search(r"Overall exposure level for colocd.service: ([\d.]+)", result.stdout)
    assert overall is not None, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure {overall.group(1)} > {MAX_EXPOSURE / 10}"


def test_hardening_and_watchdog_directives() -> None:
    unit = _directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["WatchdogSec"] and unit["Restart"] == ["on-failure"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert "/sys/fs/cgroup" in unit["ReadWritePaths"]
    assert unit["ProtectControlGroups"] == ["no"]  # cgroup writes are the job
    assert set(unit["CapabilityBoundingSet"][0].split()) == NEEDED_CAPABILITIES
    assert unit["StateDirectory"] == ["colocd"]
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[:4] == [INSTALLED_COLOCD, "run", "--pods", "${COLOCD_PODS_DIR}"]


def test_every_kept_capability_is_explained() -> None:
    comments = "\n".join(line for line in UNIT.read_text().splitlines() if line.startswith("#"))
    for capability in NEEDED_CAPABILITIES:
        assert re.search(rf"#\s+{capability}\s+\S", comments), f"{capability} has no reason"


def test_example_env_file_sets_exactly_what_the_unit_reads() -> None:
    unit_text = UNIT.read_text()
    env = _directives(ENV_FILE.read_text())
    used = set(re.findall(r"\$\{?(COLOCD_[A-Z_]+)\}?", unit_text))
    defaults = {value.split("=", 1)[0] for value in _directives(unit_text)["Environment"]}
    assert set(env) == used == defaults
    assert env["COLOCD_PODS_DIR"] == ["/etc/colocd/pods"]


def test_exec_start_is_a_valid_colocd_command_line() -> None:
    """ExecStart, with the unit's default variables expanded, parses as `colocd run`."""
    from agent.cli import build_parser

    unit = _directives(UNIT.read_text())
    defaults = dict(value.split("=", 1) for value in unit["Environment"])
    words = []
    for word in unit["ExecStart"][0].split()[1:]:
        if word.startswith("${"):
            words.append(defaults[word[2:-1]])
        elif word.startswith("$"):
            words += defaults[word[1:]].split()  # unbraced: split on spaces, empty is nothing
        else:
            words.append(word)
    args = build_parser().parse_args(words)
    assert args.command == "run"
    assert (args.pods, args.state_dir, args.revert_on_exit) == (
        "/etc/colocd/pods",
        "/var/lib/colocd",
        True,
    )


def test_colocd_runs_in_its_own_cgroup_under_the_system_tier() -> None:
    """The unit: system.slice/colocd.service, beside kubepods; the DaemonSet: a system-tier
    pod of its own, which reads kubelet's CPU manager checkpoint where the agent looks."""
    assert _directives(UNIT.read_text())["Slice"] == ["system.slice"]
    ds = yaml.safe_load((ROOT / "deploy" / "daemonset.yaml").read_text())
    template = ds["spec"]["template"]
    assert template["metadata"]["annotations"]["colocd.io/tier"] == "system"
    assert template["spec"]["priorityClassName"] == "system-node-critical"
    mounts = {m["name"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    state = mounts["cpu-manager-state"]
    assert state["readOnly"] is True
    assert state["mountPath"] == str(AgentSettings().cpu_manager_state)
