"""`colocd run` on real cgroups: --once --dry-run changes nothing; the daemon clamps batch
on an online surge through its fast path, publishes the budget in its status file and
metrics, re-reads the pod directory, and reverts everything on SIGTERM: on v1 (the host) and
on v2 (the VM of tests/vm), in trees named as kubelet's systemd and cgroupfs drivers name them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.errors import StatusError
from agent.report.status import Status, read_status
from isolation.detect import Hierarchy, Mode
from isolation.errors import UnsupportedKnobError
from isolation.knobs import KNOBS, parse_cpuset
from isolation.layout import Driver, Runtime
from lab.kubelet_tree import BUSY_LOOP, SURGE_WORKER, KubeletTree
from qos.cpus import format_cpus
from qos.k8s_qos import QOSClass
from qos.pod import Container, Pod, Resources
from tests.agent_process import start_agent
from tests.processes import free_port, wait_for

pytestmark = pytest.mark.cgroup_v1


TRIGGERS = ("usage", "pressure")
ALL = frozenset(os.sched_getaffinity(0))  # the machine's CPUs, not an assumed count
# Waits stretch inside the VM of tests/vm, whose emulated CPU is ~18x slower.
SLOW = 10 if os.environ.get("COLOCD_IN_VM") else 1


def web() -> Pod:
    return Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))


def hog(name: str) -> Pod:
    return Pod("jobs", name, containers=(Container("loop"),))


@pytest.fixture
def tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as t:
        yield t


def read(tree: KubeletTree, knob: str, cgroup: str) -> Any:
    if knob == "cpuset.cpus" and tree.hierarchy.mode is Mode.V2:
        # v2: what the cgroup may run on. An empty cpuset.cpus inherits its parent's, and the
        # kernel refuses to empty a populated one (ENOSPC), so a revert of "" writes the CPUs
        # it stands for (isolation.cgroups): the same CPUs, another text.
        assert tree.hierarchy.unified is not None
        return parse_cpuset((tree.hierarchy.unified / cgroup / "cpuset.cpus.effective").read_text())
    return tree.cgroups.read(knob, cgroup).value


def besteffort(tree: KubeletTree, knob: str) -> Any:
    return read(tree, knob, tree.layout.qos_cgroup(QOSClass.BEST_EFFORT))


def test_once_dry_run_prints_the_plan_and_the_writes_and_writes_nothing(
    tree: KubeletTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    for p in (web(), hog("a")):
        tree.write_manifest(tree.add_pod(p), pods)
    job = tree.pods[next(uid for uid, p in tree.pods.items() if p.name == "a")]
    tree.spawn(job, "loop", BUSY_LOOP)
    knobs = ("cpu.idle", "cpu.shares", "cpuset.cpus", "cpu.max", "memory.max")
    before = {k: besteffort(tree, k) for k in knobs}
    state = tmp_path / "state"
    argv = ["run", "--pods", str(pods), "--kubelet-cgroup-root", tree.root]
    assert main([*argv, "--once", "--dry-run", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan (dry run, nothing is written)")
    assert "colocd.io/batch-cpu" in out and "margin" in out and "batch tier:" in out
    be = "/" + tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
    idle_row = next(line for line in out.splitlines() if line.startswith("cpu.idle"))
    assert be in idle_row and idle_row.split()[-2:] == ["0", "1"]  # now 0, would be 1
    assert {k: besteffort(tree, k) for k in knobs} == before
    assert not state.exists()  # no journal, no status file


def test_the_agent_needs_a_readable_pod_directory(
    tree: KubeletTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--pods", str(tmp_path / "absent"), "--kubelet-cgroup-root", tree.root]
    assert main([*argv, "--once", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"colocd: error: read pods {tmp_path / 'absent'}: not a directory"


def settings(tree: KubeletTree) -> dict[tuple[str, str], Any]:
    """Every knob colocd may write (all this kernel has), on every cgroup of the tree:
    kubepods, its QoS levels, every pod and container."""
    cgroups = [tree.layout.kubepods()]
    cgroups += [tree.layout.qos_cgroup(q) for q in (QOSClass.BURSTABLE, QOSClass.BEST_EFFORT)]
    for pod in tree.pods.values():
        cgroups.append(tree.pod_cgroup(pod))
        cgroups += [tree.container_cgroup(pod, c.name) for c in pod.containers]
    values = {}
    for c in cgroups:
        for name in KNOBS:
            with contextlib.suppress(UnsupportedKnobError):  # e.g. no BFQ: no io.weight
                values[c, name] = read(tree, name, c)
    return values


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.mark.cgroup_v2
@pytest.mark.parametrize("driver", [Driver.SYSTEMD, Driver.CGROUPFS], ids=lambda d: d.value)
def test_an_online_surge_is_clamped_between_ticks_and_published_then_sigterm_reverts(
    hierarchy: Hierarchy, tmp_path: Path, driver: Driver
) -> None:
    with KubeletTree(driver, Runtime.CONTAINERD, hierarchy=hierarchy) as tree:
        _surge_clamped_and_reverted(tree, tmp_path)


def _surge_clamped_and_reverted(tree: KubeletTree, tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    online = tree.add_pod(web())
    workers = [
        tree.spawn(
            online, "app", SURGE_WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in ALL
    ]
    batch = tree.add_pod(hog("a"))
    for _ in ALL:
        tree.spawn(batch, "loop", BUSY_LOOP)
    for p in (online, batch):
        tree.write_manifest(p, pods)
    for w in workers:  # up and idle: starting an interpreter is online load of its own
        assert w.stdin is not None and w.stdout is not None
        w.stdin.write("0\n")
        w.stdin.flush()
        assert w.stdout.readline().startswith("done")

    def batch_idle() -> bool:
        return tree.cgroups.read("cpu.idle", tree.pod_cgroup(batch)).value

    original = settings(tree)
    assert original[tree.pod_cgroup(batch), "cpu.idle"] is False
    # Ticks 4 s apart: a clamp well before the next tick is the fast path's (its counter
    # says so too). The bound is generous: the machine is shared with other work.
    # Node capacity: the CPUs + 0.5, margin 0 and no cold start (a node known to be calm):
    # batch holds every CPU while online idles and drops to one when online spins on all of them.
    config = {
        "qos": {
            "cpu": {"mechanism": "cpuset"},
            "margin": {"min_fraction": 0, "max_fraction": 0, "initial_fraction": 0},
            "predictor": {"cold_start_cpu_fraction": 0, "cold_start_memory_fraction": 0},
            "reclaim": {"cpu_max_fraction": 1.0},
        },
        "agent": {"tick_s": 4, "node_cgroup": tree.root},
    }
    (tmp_path / "colocd.json").write_text(json.dumps(config))
    state, port = tmp_path / "state", free_port()
    argv = ["-v", "run", "--pods", str(pods)]
    argv += ["--kubelet-cgroup-root", tree.root, "--config", str(tmp_path / "colocd.json")]
    argv += ["--state-dir", str(state), "--node-cpu", f"{len(ALL) + 0.5}", "--revert-on-exit"]
    argv += ["--metrics-addr", f"127.0.0.1:{port}"]
    agent = start_agent(argv)
    try:

        def status() -> Status | None:
            try:
                return read_status(state)
            except StatusError:  # not written yet
                return None

        first = wait_for(status, 15 * SLOW)
        assert first.fast_path.mode in ("interval", "psi-trigger") and first.fast_path.detail
        assert besteffort(tree, "cpuset.cpus") == ALL, first.budgets[0].reason
        # SCHED_IDLE on the batch pod; besteffort is left to kubelet's own rewrites.
        assert batch_idle() is True and besteffort(tree, "cpu.idle") is False

        start = time.monotonic()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("4\n")
            w.stdin.flush()
        wait_for(lambda: len(besteffort(tree, "cpuset.cpus")) == 1, 5 * SLOW, step=0.005)
        reaction = time.monotonic() - start
        clamped = f"batch cpuset {format_cpus(besteffort(tree, 'cpuset.cpus'))}"
        assert reaction < 3.0 * SLOW, reaction
        if tree.hierarchy.mode is Mode.V2:  # the v2 files themselves
            unified = tree.hierarchy.unified
            assert unified is not None
            be = unified / tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
            assert len(parse_cpuset((be / "cpuset.cpus").read_text())) == 1
            assert (unified / tree.pod_cgroup(batch) / "cpu.idle").read_text() == "1\n"

        # The next ticks publish a smaller budget (the p95 window keeps the surge in mind).
        before = first.budgets[0].amount
        published = wait_for(
            lambda: (s := status()) is not None and s.budgets[0].amount < before and s, 12 * SLOW
        )
        assert published.fast_path.clamps >= 1 and published.fast_path.recent
        assert published.fast_path.recent[0].cap == clamped
        cpu = published.budgets[0]
        capacity = len(ALL) * 1000 + 500
        assert cpu.reason.startswith(f"colocd.io/batch-cpu {cpu.amount}m = capacity {capacity}m")
        metrics = scrape(port)
        clamps = sum(metrics[f'colocd_fastpath_clamps_total{{trigger="{t}"}}'] for t in TRIGGERS)
        assert clamps >= 1
        assert metrics["colocd_budget_batch_cpu_cores"] < before / 1000

        # A new manifest in the directory is picked up by the next tick.
        tree.write_manifest(tree.add_pod(hog("b")), pods)
        wait_for(lambda: (s := status()) is not None and s.pods["batch"] == 2, 10 * SLOW)

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15 * SLOW) == 0
    except AssertionError as err:
        agent.kill()
        tail = agent.stderr.read()[-3000:] if agent.stderr else ""
        raise AssertionError(f"{err}\nthe agent's log ends:\n{tail}") from err
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        for w in workers:
            assert w.stdout is not None
            w.stdout.close()
    log = agent.stderr.read() if agent.stderr else ""
    assert "fast path: " in log and f"clamped to {clamped}" in log
    reverted = settings(tree)
    assert {k: v for k, v in reverted.items() if k in original} == original
