"""The fast path's online use and the tick's tier sums, from a few QoS-level counters, equal
the sums over the pods read one by one, on real cgroups; a pod the agent has not placed is
left out."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal

import pytest

from agent.observe.cover import Cover, cover_of
from agent.observe.sampler import Sampler
from agent.observe.topology import locate
from isolation.readings import CgroupSample
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import BATCH_CPU, Container, Pod, Resources
from qos.state import NodeCapacity, NodeState

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.cgroup_v2]

GIB = 1 << 30


def guaranteed(name: str) -> Pod:
    both = {"cpu": Decimal(1), "memory": Decimal(GIB)}
    return Pod("shop", name, containers=(Container("app", Resources(both, both)),))


def burstable(name: str) -> Pod:
    res = Resources({"cpu": Decimal("0.5")}, {"cpu": Decimal(1)})
    return Pod("shop", name, containers=(Container("app", res),))


def batch(name: str) -> Pod:
    res = Resources({BATCH_CPU: Decimal(500)})
    return Pod("jobs", name, containers=(Container("loop", res),))


def test_online_use_from_the_cover_matches_the_pods_one_by_one(tree: KubeletTree) -> None:
    online = [tree.add_pod(guaranteed(f"g{i}")) for i in range(2)]
    online += [tree.add_pod(burstable(f"b{i}")) for i in range(2)]
    job = tree.add_pod(batch("job"))
    cgroups = [tree.pod_cgroup(p) for p in online]
    cover = cover_of(cgroups, [tree.pod_cgroup(job)], tree.cgroups.children)
    # kubepods less besteffort: two counters for four pods
    assert cover.add == (tree.layout.kubepods(),) and len(cover.reads) == 2
    one_by_one = Cover(tuple(cgroups), tuple(cgroups))
    tree.spawn(online[0], "app", BUSY_LOOP)
    tree.spawn(job, "loop", BUSY_LOOP)
    few = Sampler(tree.cgroups, "", time.monotonic)
    each = Sampler(tree.cgroups, "", time.monotonic)
    assert few.online_now(cover, stall=False) is None  # no interval yet
    each.online_now(one_by_one, stall=False)
    time.sleep(0.5)
    a = few.online_now(cover, stall=False)
    b = each.online_now(one_by_one, stall=False)
    assert a is not None and b is not None and a.used_milli is not None
    assert b.used_milli is not None
    assert abs(a.used_milli - b.used_milli) < 50 + 0.05 * b.used_milli
    assert 300 < a.used_milli < 1300  # one busy online loop; batch's would make it ~2000


def test_a_pod_the_agent_has_not_placed_is_not_taken_for_online_use(tree: KubeletTree) -> None:
    online = [tree.add_pod(burstable(f"b{i}")) for i in range(3)]
    cgroups = [tree.pod_cgroup(p) for p in online]
    level = tree.layout.qos_cgroup(QOSClass.BURSTABLE)
    assert cover_of(cgroups, [], tree.cgroups.children).reads == (level,)
    tree.add_pod(burstable("stranger"))  # kubelet made it; the agent has not placed it yet
    assert set(cover_of(cgroups, [], tree.cgroups.children).reads) == set(cgroups)


HOLD_32MIB = (
    sys.executable,
    "-c",
    "import time; b = b'x' * (32 << 20); print('ready', flush=True); time.sleep(120)",
)


def test_the_ticks_tier_sums_from_qos_levels_match_the_pods_one_by_one(tree: KubeletTree) -> None:
    online = [tree.add_pod(guaranteed(f"g{i}")) for i in range(2)]
    online += [tree.add_pod(burstable(f"b{i}")) for i in range(3)]
    jobs = [tree.add_pod(batch(f"job{i}")) for i in range(2)]
    for pod, container in ((online[0], "app"), (jobs[0], "loop")):
        tree.spawn(pod, container, BUSY_LOOP)
    for pod, container in ((online[3], "app"), (jobs[1], "loop")):
        held = tree.spawn(pod, container, HOLD_32MIB, stdout=subprocess.PIPE, text=True)
        assert held.stdout is not None and held.stdout.readline().strip() == "ready"
    node = NodeState.build("node-1", NodeCapacity(2000, 4 * GIB), [*online, *jobs])
    topo = locate(node, tree.cgroups, tree.layout)
    assert len(topo.placed) == 7
    sampler = Sampler(tree.cgroups, "", time.monotonic)

    def one_by_one(pods: list[Pod]) -> list[CgroupSample]:
        read = tree.cgroups.sample_many([tree.pod_cgroup(p) for p in pods])
        assert None not in read
        return [s for s in read if s is not None]

    sampler.sample(topo)
    cpu_before = [s.cpu.usage_ns or 0 for s in one_by_one([*online, *jobs])]
    start = time.monotonic()
    time.sleep(0.5)
    readings = sampler.sample(topo)
    each = one_by_one([*online, *jobs])
    # the interval as it was, not as asked: a busy machine oversleeps
    seconds = time.monotonic() - start
    assert len(readings.covers.reads) <= 3  # kubepods, besteffort (and burstable)
    used = [
        ((s.cpu.usage_ns or 0) - b) / 1e6 / seconds for s, b in zip(each, cpu_before, strict=True)
    ]
    cpu = readings.cpu
    assert cpu.online_used_milli is not None and cpu.batch_used_milli is not None
    assert abs(cpu.online_used_milli - sum(used[:5])) < 100 + 0.1 * sum(used[:5])
    assert abs(cpu.batch_used_milli - sum(used[5:])) < 100 + 0.1 * sum(used[5:])
    # batch's loop runs at the lowest CPU weight, so on a busy machine it may get almost none
    assert 300 < cpu.online_used_milli < 1300 and cpu.batch_used_milli < 1300
    memory = readings.memory
    online_usage = sum(s.memory.usage_bytes or 0 for s in each[:5])
    batch_ws = sum(s.memory.working_set_bytes or 0 for s in each[5:])
    assert memory.online_memory_bytes is not None and memory.batch_working_set_bytes is not None
    assert abs(memory.online_memory_bytes - online_usage) < 4 << 20
    assert abs(memory.batch_working_set_bytes - batch_ws) < 4 << 20
    assert memory.online_memory_bytes >= 32 << 20 and memory.batch_working_set_bytes >= 32 << 20
    assert readings.vanished == ()
    burstable_level = tree.layout.qos_cgroup(QOSClass.BURSTABLE)
    assert readings.covers.online == sampler.sample(topo).covers.online  # nothing changed
    # kubelet makes a pod colocd has not placed: burstable no longer counts whole, and
    # the sums are worked out again, though the pods placed are the same.
    stranger = tree.pod_cgroup(tree.add_pod(burstable("stranger")))
    covers = sampler.sample(topo).covers
    assert covers is not None and stranger not in covers.reads
    assert burstable_level not in covers.online.reads
    assert set(covers.online.reads) == {tree.pod_cgroup(p) for p in online}
    tree.remove_pod(jobs[1])  # kubelet removes it: no longer listed, so vanished
    gone = sampler.sample(topo)
    assert gone.vanished == (tree.pod_cgroup(jobs[1]),)
