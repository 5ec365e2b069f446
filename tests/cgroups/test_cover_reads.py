"""The fast path's online use from a few QoS-level counters equals the sum over the online
pods, read one by one, on real cgroups; batch's use is left out."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from agent.observe.cover import Cover, cover_of
from agent.observe.sampler import Sampler
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import BATCH_CPU, Container, Pod, Resources

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
