"""Faults that need the `colocd run` process (issue 11), on real v1 cgroups: a second agent
on the node, SIGKILL in the middle of a plan then a restart, SIGHUP/SIGQUIT, no root, a
read-only cgroupfs, a partial cgroup mount, a crash-damaged journal given to revert.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.errors import StatusError
from agent.report.status import read_status
from isolation.detect import Hierarchy
from isolation.executor import Executor, Write
from isolation.journal import FILENAME, Journal
from isolation.layout import Driver
from isolation.owner import MARKER
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import BATCH_CPU, Container, Pod, Resources
from tests.processes import wait_for

pytestmark = pytest.mark.cgroup_v1

NOBODY = 65534


def web() -> Pod:
    return Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))


def job(name: str) -> Pod:
    return Pod("jobs", name, containers=(Container("c", Resources({BATCH_CPU: Decimal(500)})),))


class Node:
    """A kubelet-like tree with an online pod and two batch pods, and their manifests."""

    def __init__(self, tree: KubeletTree, root: Path) -> None:
        self.tree = tree
        self.root = root
        self.pods = root / "pods"
        self.pods.mkdir()
        self.online = tree.add_pod(web())
        self.batch = [tree.add_pod(job("a")), tree.add_pod(job("b"))]
        for p in (self.online, *self.batch):
            tree.write_manifest(p, self.pods)
        tree.spawn(self.batch[0], "c", BUSY_LOOP)
        self.config = root / "colocd.json"
        self.config.write_text(
            json.dumps(
                {
                    "qos": {"cpu": {"mechanism": "cpuset"}},
                    "agent": {"tick_s": 0.5, "node_cgroup": tree.root},
                }
            )
        )

    def argv(self, state: Path, *extra: str) -> list[str]:
        return [
            "run",
            "--pods",
            str(self.pods),
            "--kubelet-cgroup-root",
            self.tree.root,
            "--config",
            str(self.config),
            "--state-dir",
            str(state),
            "--node-cpu",
            "2",
            "--no-fast-path",
            *extra,
        ]

    def start(self, state: Path, *extra: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "agent.cli", *self.argv(state, *extra)]
        return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)

    def knobs(self) -> dict[tuple[str, str], Any]:
        """Every setting colocd may change here, and the online pod's own."""
        cg = self.tree.cgroups
        be = self.tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
        cgroups = [be, self.tree.pod_cgroup(self.online)]
        for p in self.batch:
            cgroups += [self.tree.pod_cgroup(p), self.tree.container_cgroup(p, "c")]
        names = ("cpu.idle", "cpu.shares", "cpuset.cpus", "cpu.max", "memory.max")
        return {(c, k): cg.read(k, c).value for c in cgroups for k in names}

    def kubepods(self) -> Path:
        return self.tree.hierarchy.reference() / self.tree.layout.kubepods()

    def batch_idle(self) -> bool:
        """cpu.idle on every batch pod (where colocd puts it: kubelet rewrites besteffort)."""
        cg = self.tree.cgroups
        return all(cg.read("cpu.idle", self.tree.pod_cgroup(p)).value is True for p in self.batch)


@pytest.fixture
def node(hierarchy: Hierarchy) -> Iterator[Node]:
    # Outside pytest's 0700 tmp so that an unprivileged agent can read it too.
    root = Path(tempfile.mkdtemp(prefix="colocd-faults-"))
    try:
        with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
            yield Node(tree, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ticked(state: Path, ticks: int = 1) -> Any:
    def status() -> Any:
        try:
            s = read_status(state)
        except StatusError:
            return None
        return s if s.ticks >= ticks else None

    return wait_for(status, 60)  # generous: the machine is shared


def stop(agent: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    agent.send_signal(sig)
    try:
        rc = agent.wait(timeout=20)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    return rc, agent.stderr.read() if agent.stderr else ""


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("colocd: error:")]


def test_a_second_agent_refuses_to_start_and_names_the_first_ones_pid(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    original = node.knobs()
    state = node.root / "state"
    first = node.start(state, "--revert-on-exit")
    try:
        ticked(state)
        assert json.loads(os.getxattr(node.kubepods(), MARKER))["pid"] == first.pid
        # The same state dir: the flock.
        assert main([*node.argv(state), "--once"]) == 1
        err = capsys.readouterr().err.strip()
        lock = state / "colocd.lock"
        assert err == (
            f"colocd: error: own {lock}: another colocd (pid {first.pid}) runs with this state dir"
        )
        # Nor does `colocd revert` pull the tree from under it.
        assert main(["revert", "--state-dir", str(state)]) == 1
        assert f"another colocd (pid {first.pid})" in capsys.readouterr().err
        # Another state dir, the same tree: the marker. The tree is left as it is.
        enforced = node.knobs()
        other = node.root / "other"
        assert main([*node.argv(other), "--once"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"colocd: error: own {node.kubepods()}: another colocd (pid ")
        assert f"(pid {first.pid}, state dir {state})" in err and len(err.splitlines()) == 1
        assert not (other / FILENAME).exists()
        assert node.knobs() == enforced
    finally:
        rc, log = stop(first)
    assert rc == 0, log
    assert node.knobs() == original  # the first one's originals, not the second's view
    with pytest.raises(OSError) as gone:
        os.getxattr(node.kubepods(), MARKER)
    assert gone.value.errno == errno.ENODATA


def test_sigkill_mid_plan_then_a_restart_replays_the_journal_and_leaves_nothing_half_applied(
    node: Node,
) -> None:
    original = node.knobs()
    state = node.root / "state"
    agent = node.start(state)
    journal = state / FILENAME
    try:
        wait_for(journal.exists, 60, step=0.001)  # the first original is on disk: writes began
    finally:
        agent.kill()
        agent.wait()
    assert agent.stderr is not None
    agent.stderr.close()
    # A restart takes over the tree (the marker's process is gone) and finishes the plan.
    restart = node.start(state)
    try:
        status = ticked(state)
        assert status.apply.counts.get("failed", 0) == 0
        assert node.batch_idle()
    finally:
        rc, log = stop(restart)
    assert rc == 0, log
    assert f"from colocd pid {agent.pid}, which is gone" in log  # took the tree over
    # Every original is the one from before the first agent wrote anything.
    assert main(["revert", "--state-dir", str(state)]) == 0
    assert node.knobs() == original
    assert not journal.exists()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_sighup_and_sigquit_stop_like_sigterm_and_revert_every_knob(
    node: Node, sig: signal.Signals
) -> None:
    original = node.knobs()
    state = node.root / "state"
    agent = node.start(state, "--revert-on-exit")
    try:
        ticked(state)
        assert node.batch_idle()
    finally:
        rc, log = stop(agent, sig)  # never leave it running, whatever failed
    assert rc == 0, log
    assert node.knobs() == original


def test_without_root_run_says_so_at_once_and_exits_non_zero(node: Node) -> None:
    original = node.knobs()
    state = node.root / "state"
    for path in (node.root, node.pods, node.config, *node.pods.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    # The interpreter lives under root's 0700 home: load everything, then drop to nobody.
    code = (
        "import os, sys; from agent.cli import main; import agent.commands.run; "
        f"os.setgid({NOBODY}); os.setuid({NOBODY}); sys.exit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, *node.argv(state, "--once")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    [line] = errors(done.stderr)
    assert "Permission denied" in line and "colocd must run as root" in line
    assert node.knobs() == original


def test_a_read_only_cgroupfs_stops_run_with_one_line(node: Node) -> None:
    original = node.knobs()
    state = node.root / "state"
    # In a private mount namespace of its own, every controller's mount is read-only.
    mounts = " ".join(str(m) for m in node.tree.hierarchy.mounts().values())
    script = f'for m in {mounts}; do mount -o remount,bind,ro "$m" || exit 9; done; exec "$@"'
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    argv += [sys.executable, "-m", "agent.cli", *node.argv(state, "--once")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    [line] = errors(done.stderr)
    assert "Read-only file system" in line, line
    assert node.knobs() == original


def test_a_cgroup_root_at_one_controllers_mount_is_a_one_line_error(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = node.tree.hierarchy.v1["memory"]
    argv = node.argv(node.root / "state", "--once")
    assert main([*argv, "--cgroup-root", str(memory)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("colocd: error: detect cgroup hierarchy: no cpu, cpuset controllers")
    assert len(err.splitlines()) == 1


def test_a_tick_below_the_floor_is_refused(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*node.argv(node.root / "state", "--once"), "--tick", "1e-9"]) == 1
    err = capsys.readouterr().err.strip()
    assert "agent.tick_s: Input should be greater than or equal to 0.1" in err
    assert len(err.splitlines()) == 1


def test_revert_restores_every_intact_record_of_a_damaged_journal_and_keeps_the_rest(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    original = node.knobs()
    state = node.root / "state"
    be = node.tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
    pod = node.tree.pod_cgroup(node.batch[0])
    journal = Journal(state, str(node.tree.hierarchy.root), node.tree.cgroups.version)
    ex = Executor(node.tree.cgroups, journal)
    report = ex.apply([Write("cpu.idle", be, True), Write("cpu.shares", pod, 512)])
    assert not report.failed, report.failed
    path = state / FILENAME
    path.write_bytes(b"\0" * 4096 + path.read_bytes() + b'{"half a rec')  # power loss
    assert main(["revert", "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert node.knobs() == original  # every intact record restored
    assert [e.split(": line ")[1].split(" unreadable")[0] for e in errors(err)] == ["1", "4"]
    kept = path.read_bytes()
    assert kept == b"\0" * 4096 + b"\n" + b'{"half a rec\n'  # never deleted what it could not read


def test_revert_of_a_journal_of_nuls_only_reports_it_and_deletes_nothing(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    state = node.root / "state"
    state.mkdir()
    (state / FILENAME).write_bytes(b"\0" * 8192)
    assert main(["revert", "--state-dir", str(state)]) == 1
    [line] = errors(capsys.readouterr().err)
    assert "line 1 unreadable, kept: 8192 NUL bytes" in line
    assert (state / FILENAME).read_bytes() == b"\0" * 8192
