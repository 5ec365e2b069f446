"""`colocd demo` end to end, as a user runs it: a subprocess on the real kernel.

A short run prints a live line per second through the three phases, the summary table and
the verdict, writes the PNG, and leaves nothing behind: no cgroup beneath this process's
own, no process it started. SIGINT in the middle of the colocd phase cleans up the same
way. Without root, or with cgroups it cannot write, it fails with one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isolation.detect import detect_hierarchy
from lab.kubelet_tree import own_cgroup
from tests.host_cgroups import requires_cgroup_v1

ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "agent.cli", "demo"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trees() -> set[Path]:
    """Trees beneath this process's cgroup, in every hierarchy (where the demo builds)."""
    hierarchy = detect_hierarchy()
    own = own_cgroup(hierarchy)
    return {p for mount in hierarchy.mounts().values() for p in (mount / own).glob("colocd-test-*")}


def _processes_under(path: Path) -> list[str]:
    """Command lines that mention `path` (the demo's work directory lives below it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def _env(tmp_path: Path) -> dict[str, str]:
    # The demo's work directory (tempfile) goes below tmp_path, so its processes are found.
    return {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}


@pytest.mark.cgroup_v1
@pytest.mark.slow
@requires_cgroup_v1
def test_a_short_demo_takes_turns_compares_plots_and_leaves_nothing(tmp_path: Path) -> None:
    before = _trees()
    plot = tmp_path / "demo.png"
    result = subprocess.run(
        [*DEMO, "--duration", "15", "--plot", str(plot)],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:] + out[-2000:]
    live = [line for line in out.splitlines() if " online p99 " in line]
    phases = [line.split()[1] for line in live]
    turns = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert turns == ["alone", "kubelet", "colocd", "kubelet", "colocd"], out  # taking turns
    assert "phase 4/5: colocd stops and writes back every value it changed" in out
    colocd = [line for line in live if line.split()[1] == "colocd"]
    assert all("batch-cpu " in line and "batch-memory " in line for line in colocd), colocd
    kubelet = [line for line in live if line.split()[1] == "kubelet"]
    assert all("budgets - (colocd not running" in line for line in kubelet), kubelet
    table = out[out.index("PHASE") :]
    for row in ("online alone", "online + batch, kubelet defaults", "online + batch, colocd"):
        assert row in table
    assert "Under colocd, online's p99" in out and "of the work it did under kubelet" in out
    assert "colocd stopped and wrote back every cgroup value it had changed" in out
    assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 10_000
    assert _trees() == before
    assert _processes_under(tmp_path) == []


@pytest.mark.cgroup_v1
@pytest.mark.slow
@requires_cgroup_v1
def test_sigint_during_the_colocd_phase_cleans_up_everything(tmp_path: Path) -> None:
    before = _trees()
    plot = tmp_path / "demo.png"
    demo = subprocess.Popen(
        [*DEMO, "--duration", "24", "--plot", str(plot)],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        seen = []
        deadline = time.monotonic() + 90
        for line in demo.stdout:
            seen.append(line)
            if " colocd " in line and "batch-cpu " in line:  # the agent runs and enforces
                break
            assert time.monotonic() < deadline, "".join(seen)
        else:
            pytest.fail("the demo ended before its colocd phase: " + "".join(seen))
        running = _processes_under(tmp_path)
        assert any("agent.cli -v run" in p for p in running), running
        assert any("lab.workloads.latency_probe" in p for p in running), running
        demo.send_signal(signal.SIGINT)
        rest, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err
    assert "interrupted by SIGINT; everything it created was removed" in err
    assert "clean-up: colocd stopped and wrote back every cgroup value" in rest
    assert "PHASE" not in rest and not plot.exists()
    assert _trees() == before
    assert _processes_under(tmp_path) == []


def test_without_root_it_fails_with_one_line(tmp_path: Path) -> None:
    """In a user namespace of its own this process is not root (uid 65534)."""
    result = subprocess.run(
        ["unshare", "--user", *DEMO, "--duration", "15"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 1 and "unshare" in result.stderr:
        pytest.skip(f"no user namespaces here: {result.stderr.strip()}")
    assert result.returncode == 1
    assert result.stderr == (
        "colocd: error: run demo: needs root (it builds cgroups and moves processes into them)\n"
    )
    assert result.stdout == ""


@pytest.mark.cgroup_v1
@requires_cgroup_v1
def test_with_read_only_cgroups_it_fails_with_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """In a mount namespace of its own every cgroup mount is read-only."""
    before = _trees()
    script = (
        'for m in /sys/fs/cgroup/*/; do mount -o remount,bind,ro "$m" || exit 99; done; exec "$@"'
    )
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", *DEMO, "--duration", "15"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 99:
        pytest.skip("cannot remount the cgroup mounts read-only here")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("colocd: error: build the demo's cgroup tree: /sys/fs/cgroup/")
    assert lines[0].endswith(": Read-only file system")
    assert result.stdout == ""
    assert _trees() == before
