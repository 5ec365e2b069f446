"""Eviction on a bare host, on real cgroups: the chosen batch pod's processes get SIGTERM,
then SIGKILL after the grace period (v2 `cgroup.kill`, v1 each PID), and no other pod's
process is touched. Counted and logged like an API eviction; dry-run signals nothing.
Runs on the host (v1) and in the VM (v2: the cgroup.kill path)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.act.cgroup_evictor import CgroupEvictor
from agent.report.metrics import KubeMetrics
from isolation.detect import Hierarchy
from isolation.layout import Driver
from isolation.procs import alive, pids_below
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.plan import Eviction
from qos.pod import BATCH_CPU, Container, Pod, Resources
from tests.processes import free_port, wait_for

# Ignores SIGTERM (as its child, a sleep, does: an ignored signal stays ignored across exec).
STUBBORN = (
    sys.executable,
    "-c",
    "import signal, subprocess, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen(['sleep', '120'])\n"
    "time.sleep(120)\n",
)


GRACE_S = 6.0


def batch(name: str, batch_cpu: str = "0") -> Pod:
    requests = {BATCH_CPU: Decimal(batch_cpu)} if batch_cpu != "0" else {}
    return Pod("jobs", name, containers=(Container("main", Resources(requests)), Container("side")))


def web() -> Pod:
    return Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.2")})),))


@pytest.fixture
def tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as t:
        try:
            yield t
        finally:
            # The tree kills what it spawned; STUBBORN's child is the test's too.
            for pod in t.pods.values():
                for pid in pids_below(t.cgroups, t.pod_cgroup(pod)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def counted(registry: CollectorRegistry, result: str) -> float:
    value = registry.get_sample_value("colocd_eviction_requests_total", {"result": result})
    return value or 0.0


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2  # in the VM: the cgroup.kill path
def test_the_chosen_pod_gets_sigterm_then_sigkill_and_no_other_pod_is_touched(
    tree: KubeletTree, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tree.add_pod(batch("a"))
    other, online = tree.add_pod(batch("b")), tree.add_pod(web())
    polite = tree.spawn(victim, "main", BUSY_LOOP)  # dies on SIGTERM
    stubborn = tree.spawn(victim, "side", STUBBORN)
    bystanders = [tree.spawn(other, "main", BUSY_LOOP), tree.spawn(online, "app", BUSY_LOOP)]
    pod_cgroup = tree.pod_cgroup(victim)
    victims = wait_for(lambda: len(p := pids_below(tree.cgroups, pod_cgroup)) == 3 and p, 60)
    assert {polite.pid, stubborn.pid} < victims  # and the stubborn one's child
    registry = CollectorRegistry()
    evictor = CgroupEvictor(tree.cgroups, tree.layout, KubeMetrics(registry), grace_s=GRACE_S)
    caplog.set_level(logging.INFO, logger="agent.act")

    sent = time.monotonic()
    outcome = evictor.evict(Eviction("jobs/a", victim.uid, 0, False, "batch starved"), victim)
    assert outcome.result.value == "evicted", outcome.message
    assert f"SIGTERM to 3 processes of /{pod_cgroup}" in outcome.message
    assert polite.wait(timeout=GRACE_S) == -signal.SIGTERM
    if time.monotonic() - sent < GRACE_S - 0.5:  # (a very busy machine may be late here)
        assert all(alive(p) for p in victims - {polite.pid})  # the grace period
    wait_for(lambda: not any(alive(p) for p in victims), 10)
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert pids_below(tree.cgroups, pod_cgroup) == frozenset()
    assert all(b.poll() is None for b in bystanders)
    assert counted(registry, "evicted") == 1
    killed_with = "cgroup.kill" if tree.cgroups.version == 2 else "SIGKILL to"
    assert any(killed_with in r.getMessage() for r in caplog.records)
    assert any("evict pod jobs/a: evicted" in r.getMessage() for r in caplog.records)
    evictor.close()


def _failing_reads(monkeypatch: pytest.MonkeyPatch, cgroup: str, code: int) -> None:
    """Reading `cgroup`'s cgroup.procs fails with `code`, as when the kernel removes it
    between the open and the read (ENODEV), a race no real tree can time."""
    real = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if self.name == "cgroup.procs" and f"/{cgroup}" in str(self):
            raise OSError(code, os.strerror(code))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


@pytest.mark.cgroup_v1
def test_a_cgroup_removed_while_the_sigkill_rounds_read_it_ends_them_quietly(
    tree: KubeletTree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tree.add_pod(batch("a"))
    tree.spawn(victim, "side", STUBBORN)  # outlives SIGTERM: the SIGKILL rounds read again
    pod_cgroup = tree.pod_cgroup(victim)
    wait_for(lambda: pids_below(tree.cgroups, pod_cgroup), 60)
    evictor = CgroupEvictor(tree.cgroups, tree.layout, KubeMetrics(CollectorRegistry()))
    outcome = evictor.evict(Eviction("jobs/a", victim.uid, 0, False, "starved"), victim)
    assert outcome.result.value == "evicted", outcome.message
    caplog.set_level(logging.INFO, logger="agent.act")
    _failing_reads(monkeypatch, pod_cgroup, errno.ENODEV)
    assert pids_below(tree.cgroups, pod_cgroup) == frozenset()  # gone, so nothing in it
    evictor.close()  # the pending SIGKILL, now: nothing left to signal, and no error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    monkeypatch.undo()
    other = tree.add_pod(batch("b"))
    tree.spawn(other, "main", BUSY_LOOP)
    wait_for(lambda: pids_below(tree.cgroups, tree.pod_cgroup(other)), 60)
    _failing_reads(monkeypatch, tree.pod_cgroup(other), errno.EIO)
    failed = evictor.evict(Eviction("jobs/b", other.uid, 0, False, "starved"), other)
    assert failed.result.value == "failed" and "Input/output error" in failed.message


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2  # in the VM: the cgroup.kill path
def test_dry_run_and_a_gone_pod_signal_nothing(tree: KubeletTree) -> None:
    victim = tree.add_pod(batch("a"))
    proc = tree.spawn(victim, "main", BUSY_LOOP)
    wait_for(lambda: pids_below(tree.cgroups, tree.pod_cgroup(victim)), 60)
    registry = CollectorRegistry()
    evictor = CgroupEvictor(tree.cgroups, tree.layout, KubeMetrics(registry), grace_s=0)
    dry = evictor.evict(Eviction("jobs/a", victim.uid, 0, True, "starved"), victim)
    assert dry.result.value == "dry_run" and dry.message.startswith("would send SIGTERM to 1")
    gone = evictor.evict(Eviction("jobs/x", "uid-x", 0, False, "starved"), None)
    assert gone.result.value == "gone"
    evictor.close()
    time.sleep(0.3)
    assert proc.poll() is None
    assert counted(registry, "dry_run") == 1 and counted(registry, "gone") == 1
    assert counted(registry, "evicted") == 0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@pytest.mark.cgroup_v1  # (a whole agent is too slow for the emulated VM's budget)
@pytest.mark.slow
def test_the_running_agent_evicts_a_starved_batch_pod_through_its_cgroup(
    tree: KubeletTree, tmp_path: Path
) -> None:
    """`colocd run --pods`: batch wants two CPUs of a node said to have one, and starvation
    evicts at once; the pod that asks more batch-cpu goes first, and only its processes die."""
    pods = tmp_path / "pods"
    pods.mkdir()
    victim, other, online = (tree.add_pod(p) for p in (batch("a", "900"), batch("b"), web()))
    hogs = [tree.spawn(victim, "main", BUSY_LOOP), tree.spawn(victim, "side", BUSY_LOOP)]
    bystanders = [tree.spawn(other, "main", BUSY_LOOP), tree.spawn(online, "app", BUSY_LOOP)]
    for p in (victim, other, online):
        tree.write_manifest(p, pods)
    eviction = {"starvation_fraction": 1.0, "starvation_seconds": 0, "cooldown_seconds": 600}
    config = {"qos": {"eviction": eviction}, "agent": {"tick_s": 1, "kill_grace_s": 1}}
    (tmp_path / "colocd.json").write_text(json.dumps(config))
    port = free_port()
    argv = [sys.executable, "-m", "agent.cli", "-v", "run", "--pods", str(pods)]
    argv += ["--kubelet-cgroup-root", tree.root, "--config", str(tmp_path / "colocd.json")]
    argv += ["--state-dir", str(tmp_path / "state"), "--node-cpu", "1", "--revert-on-exit"]
    argv += ["--metrics-addr", f"127.0.0.1:{port}"]
    agent = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: all(h.poll() is not None for h in hogs), 40, step=0.2)
        assert 'colocd_eviction_requests_total{result="evicted"} 1.0' in scrape(port)
        time.sleep(2)  # a second eviction would come now (it must not: cool-down)
        assert all(b.poll() is None for b in bystanders)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    log = agent.stderr.read() if agent.stderr else ""
    assert "evict pod jobs/a: evicted: sent SIGTERM to 2 processes" in log, log[-3000:]
    assert "jobs/b" not in log.split("evict pod", 1)[1]
