"""The fault matrix of issue 11, on real v1 cgroups (a kubelet-like tree) with the tick loop
in this process: EBUSY/EINVAL from a knob, NaN/negative/absurd samples, the wall clock
jumping both ways, a full or corrupt state directory, and the API server (kmock) gone for
minutes then back with 410, with a watch cut mid-stream.

After each fault: no online pod is throttled or frozen (its settings are as kubelet made
them), nothing outside colocd's files changed, and the loop converges within 2 ticks once
the fault ends. (A cgroup removed between read and write and a lost pod source are in
test_agent_loop.py; the faults that need the `colocd run` process are in
test_agent_faults.py.)
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.report.metrics import KubeMetrics
from agent.report.status import FILENAME as STATUS_FILE
from agent.report.status import read_status
from agent.sources.backoff import Backoff
from agent.sources.kube import KubeClient
from agent.sources.pod_source import ApiPodSource
from agent.tick import TickResult
from isolation.detect import Hierarchy
from isolation.executor import Write
from isolation.journal import FILENAME as JOURNAL_FILE
from isolation.knobs import CpuMax
from qos.pod import BATCH_MEMORY
from qos.samples import PressureReading
from tests.cgroups.test_agent_loop import Node, first_tick, job, node_in, web
from tests.kube.apiserver import _CLOSE, ApiServer

pytestmark = pytest.mark.cgroup_v1

MIB = 1 << 20
# The online pod's settings kubelet made; colocd must never change them.
ONLINE_KNOBS = ("cpu.max", "cpuset.cpus", "cpu.shares", "memory.max", "freeze")


@pytest.fixture
def node(hierarchy: Hierarchy, tmp_path: Path) -> Iterator[Node]:
    yield from node_in(hierarchy, tmp_path)


def online(node: Node) -> dict[str, Any]:
    return {k: node.read(k, "web") for k in ONLINE_KNOBS}


def clean(result: TickResult | None) -> bool:
    return result is not None and result.report is not None and not result.report.failed


def converges(node: Node, loop: Any, check: Any = clean) -> TickResult:
    """Within 2 ticks of the fault's end the tick is clean (and `check` holds)."""
    for _ in range(2):
        result = loop.tick()
        if check(result):
            return result
    raise AssertionError(f"not converged within 2 ticks: {result.report if result else None}")


def test_ebusy_from_a_knob_fails_that_write_only_and_the_loop_converges_when_it_ends(
    node: Node,
) -> None:
    node.add(web())
    hog = node.add(job(**{BATCH_MEMORY: Decimal(16 * MIB)}))
    holder = node.tree.spawn(
        hog,
        "loop",
        [sys.executable, "-c", HOLD_64MIB],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    before = online(node)
    loop = node.loop()
    busy = first_tick(loop)
    assert busy.report is not None
    refused = [r for r in busy.report.failed if r.write.knob == "memory.max"]
    # v1 cannot push 64 MiB of anonymous memory (no swap) under 16 MiB: EBUSY, that write only.
    assert [r.errno for r in refused] == [errno.EBUSY], busy.report.failed
    assert len(busy.report.failed) == 1 and loop.fatal is None
    assert any(d.kind == "apply_failed" for d in busy.degraded)
    assert online(node) == before
    holder.kill()
    holder.wait()
    converges(node, loop)
    assert node.read("memory.max", "job") == 16 * MIB
    assert online(node) == before
    loop.close()


HOLD_64MIB = "import time; b = b'x' * (64 << 20); print('ready', flush=True); time.sleep(120)"


def test_einval_from_a_knob_is_reported_with_its_errno_and_the_next_write_succeeds(
    node: Node,
) -> None:
    node.add(web())
    node.add(job(), busy=1)
    loop = node.loop()
    first_tick(loop)
    pod = node.tree.pod_cgroup(node.pods["job"])
    child = node.tree.container_cgroup(node.pods["job"], "loop")
    assert loop.executor is not None
    loop.executor.apply([Write("cpu.max", child, CpuMax(50_000, 100_000))])
    # v1 refuses a parent quota below a child's.
    report = loop.executor.apply([Write("cpu.max", pod, CpuMax(10_000, 100_000))])
    assert [r.errno for r in report.failed] == [errno.EINVAL]
    assert node.read("cpu.max", "job") == CpuMax(50_000, 100_000)  # its batch-cpu 500m
    converges(node, loop)
    loop.close()


@pytest.mark.parametrize("bad", [math.nan, -5e9, 1e300, math.inf])
def test_nan_negative_and_absurd_samples_are_missing_not_evidence(node: Node, bad: float) -> None:
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    loop = node.loop()
    healthy = first_tick(loop)
    assert clean(healthy)
    before, batch_memory = online(node), node.read("memory.max")
    real = loop.sampler.sample

    def corrupt(topo: Any, **kwargs: Any) -> Any:
        r = real(topo, **kwargs)
        cpu = {f: bad for f in r.cpu._fields if f != "at"}
        memory = {f: bad for f in r.memory._fields if f != "at"}
        return r._replace(
            cpu=r.cpu._replace(**cpu),
            memory=r.memory._replace(**memory),
            cpu_pressure=PressureReading(r.at, bad, bad),
            memory_pressure=PressureReading(r.at, bad, bad),
        )

    loop.sampler.sample = corrupt  # type: ignore[method-assign]
    for _ in range(3):
        result = loop.tick()
        assert clean(result), result.report if result else None
        assert result is not None
        for b in result.plan.budgets.all():
            assert 0 <= b.amount <= b.capacity
        assert not result.plan.evictions
    # Nothing read is believed: batch's memory is not squeezed (the limit may follow the
    # fresh system reading the test leaves alone, never down), online untouched.
    assert node.read("memory.max") >= batch_memory
    assert online(node) == before
    loop.sampler.sample = real  # type: ignore[method-assign]
    converges(node, loop, lambda r: clean(r) and r.readings.cpu.online_used_milli is not None)
    loop.close()


def test_the_wall_clock_jumping_both_ways_changes_nothing_but_the_status_time(
    node: Node,
) -> None:
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    jump = [0.0]
    loop = node.loop(wall=lambda: time.time() + jump[0])
    first = first_tick(loop)
    before = online(node)
    for offset in (86_400.0 * 365, -86_400.0 * 365, 0.0):
        jump[0] = offset
        result = loop.tick()
        assert clean(result) and result is not None
        assert not result.degraded, result.degraded  # the loop runs on the monotonic clock
        assert not any(b.degraded for b in result.plan.budgets.all())
        assert result.plan.batch_tier.cpu_idle == first.plan.batch_tier.cpu_idle
        status = read_status(node.state)
        assert abs(status.written_at - (time.time() + offset)) < 60
    assert online(node) == before
    loop.close()


def test_a_full_state_dir_blocks_new_changes_only_and_they_follow_once_there_is_room(
    node: Node, tmp_path: Path
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        node.state = small / "state"
        node.add(web(), busy=1)
        loop = node.loop()
        filler = small / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill it: appends now fail, ENOSPC
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        finally:
            os.close(fd)
        before = online(node)
        node.add(job(), busy=1)
        full = first_tick(loop)
        assert full.report is not None and full.report.failed
        # A write whose original cannot be journaled is not made: nothing left unrevertable.
        assert all(r.reason.startswith("not written: journal") for r in full.report.failed)
        assert node.read("cpu.idle", "job") is False
        assert online(node) == before and loop.fatal is None
        filler.unlink()
        converges(node, loop)
        assert node.read("cpu.idle", "job") is True
        assert (node.state / STATUS_FILE).exists()
        assert online(node) == before
        reverted = loop.close()
        assert reverted is not None and not reverted.failed
        assert node.read("cpu.idle", "job") is False
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_corrupt_state_dir_is_reverted_as_far_as_it_is_intact(node: Node) -> None:
    node.add(web(), busy=1)
    node.add(job(), busy=1)
    all_cpus = node.read("cpuset.cpus")  # the machine's, before colocd narrows batch's
    loop = node.loop()
    first_tick(loop)
    loop.executor.revert_on_exit = False  # type: ignore[union-attr]
    loop.close()  # stops with its values applied, as after a crash
    assert node.read("cpu.idle", "job") is True
    journal = node.state / JOURNAL_FILE
    journal.write_bytes(b"\0" * 4096 + journal.read_bytes() + b"\xff\xfe torn")
    (node.state / STATUS_FILE).write_bytes(b"\x00\xffnot json")
    again = node.loop()  # starts on the damaged journal, warns, keeps its lines
    result = first_tick(again)
    assert clean(result)
    assert len(again.executor.journal.damaged) == 2  # type: ignore[union-attr]
    assert read_status(node.state).ticks == 1  # the status file is simply replaced
    reverted = again.close()
    assert reverted is not None and not reverted.failed
    assert node.read("cpu.idle", "job") is False and node.read("cpuset.cpus") == all_cpus
    assert b"\xff\xfe torn" in journal.read_bytes()  # what could not be read stays


# --- the API server ------------------------------------------------------------------------


def test_the_api_server_gone_for_minutes_then_back_with_410_and_a_cut_watch(
    node: Node, tmp_path: Path
) -> None:
    api = ApiServer()
    client = KubeClient.for_url(api.url)
    source = ApiPodSource(
        client, "test-node", KubeMetrics(CollectorRegistry()), backoff=Backoff(0.05, 0.3)
    )
    try:
        web_pod, job_pod = node.add(web(), busy=1), node.add(job(), busy=1)
        for pod in (web_pod, job_pod):
            api.create(node.tree.bound(pod, "test-node"))
        source.start()
        assert source.wait_synced(10)
        # Minutes away, in loop time: the loop's staleness limits are cut to fractions of a
        # second so the test stays short.
        loop = node.loop(
            source=source,
            qos={"reclaim": {"stale_after_seconds": 0.3, "degrade_seconds": 0}},
            pods_stale_after_s=0.3,
        )
        assert clean(first_tick(loop))
        before, batch = online(node), (node.read("memory.max"), node.read("cpu.idle", "job"))
        api.stop()
        for _ in range(20):  # until the readings are withheld and the budgets have decayed
            time.sleep(0.2)
            away = loop.tick()
            assert away is not None and away.report is not None and not away.report.failed
            if away.readings is not None:  # still fresh: the limits follow them
                batch = (node.read("memory.max"), node.read("cpu.idle", "job"))
            if away.readings is None and away.plan.budgets.memory.degraded:
                break
        assert any(d.kind == "pod_source" for d in away.degraded)
        assert away.readings is None and away.plan.budgets.memory.amount == 0  # no new offers
        assert (node.read("memory.max"), node.read("cpu.idle", "job")) == batch  # ... no squeeze
        assert online(node) == before
        # Back, with its history compacted meanwhile: the watch gets 410 and lists again.
        api.emulator.compacted_rv = api.emulator.rv + 1
        api.start()
        assert wait(lambda: source.snapshot().fresh)
        converges(node, loop, lambda r: clean(r) and not r.degraded)
        # A watch cut mid-stream: the next pod is still seen, and enforced within 2 ticks.
        api._run(api.emulator.broadcast(_CLOSE))
        api.create(node.tree.bound(node.add(job("late")), "test-node"))
        assert wait(lambda: any(p.name == "late" for p in source.snapshot().pods))
        converges(node, loop, lambda r: clean(r) and node.read("cpu.max", "late").quota_us)
        assert online(node) == before
        loop.close()
    finally:
        source.stop()
        client.close()
        api.close()


def wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
