"""CPU picking (whole physical cores, one NUMA node when the request fits), kubelet's static
CPU manager (its checkpoint, and colocd deferring to it), and the sysfs topology reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.observe.cpu_topology import read_topology
from agent.sources.cpu_manager import CpuManagerState, parse_cpu_manager_state
from qos.cpus import CpuInfo, CpuTopology, KubeletCpus, batch_cpuset, pick_cpus
from qos.decide import BrainState, decide
from qos.plan import CpusetCap
from qos.settings import QosSettings
from qos.state import NodeCapacity
from tests.qos_builders import GIB, node, pod, snapshot

# Two NUMA nodes of 4 cores with 2 threads each, numbered like Linux on x86: CPU i and
# i + 8 are siblings; node 0 holds CPUs 0-3 and 8-11, node 1 holds 4-7 and 12-15.
TWO_NODES = CpuTopology(tuple(CpuInfo(c, c % 8, 0 if c % 8 < 4 else 1) for c in range(16)))
ALL = tuple(range(16))


def cores(cpus: tuple[int, ...]) -> set[int]:
    return {TWO_NODES.info(c).core for c in cpus}


def nodes(cpus: tuple[int, ...]) -> set[int]:
    return {TWO_NODES.info(c).node for c in cpus}


@pytest.mark.parametrize(
    ("want", "expect"),
    [
        (2, (7, 15)),  # one whole core: both hyperthreads
        (4, (6, 7, 14, 15)),  # two whole cores on one node
        (8, (4, 5, 6, 7, 12, 13, 14, 15)),  # a whole node
    ],
)
def test_whole_cores_on_one_numa_node(want: int, expect: tuple[int, ...]) -> None:
    got = pick_cpus(ALL, want, TWO_NODES)
    assert got == expect
    assert len(cores(got)) == want // 2 and len(nodes(got)) == 1


def test_an_odd_request_splits_one_core_and_prefers_one_already_split() -> None:
    got = pick_cpus(ALL, 3, TWO_NODES)
    assert len(got) == 3 and len(cores(got)) == 2 and len(nodes(got)) == 1
    # CPU 15 is taken (its sibling 7 is free): the single thread comes from that core.
    free = tuple(c for c in ALL if c != 15)
    got = pick_cpus(free, 3, TWO_NODES)
    assert 7 in got and len(cores(got)) == 2 and len(nodes(got)) == 1


def test_the_fullest_node_that_fits_is_chosen_and_a_big_request_spans_nodes() -> None:
    # Node 1 has only one whole core left; a 2-CPU request fits there, keeping node 0 whole.
    free = (*range(4), *range(8, 12), 7, 15)
    assert pick_cpus(free, 2, TWO_NODES) == (7, 15)
    got = pick_cpus(ALL, 10, TWO_NODES)
    assert len(got) == 10 and len(cores(got)) == 5  # whole cores, on both nodes


def test_without_topology_the_highest_cpus_are_taken() -> None:
    assert pick_cpus(range(8), 3) == (5, 6, 7)


def test_batch_cpuset_takes_whole_cores_so_it_shares_none_with_online() -> None:
    cap = batch_cpuset(ALL, 4000, 1, TWO_NODES)
    assert len(cap.cpus) == 4 and len(cores(cap.cpus)) == 2 and len(nodes(cap.cpus)) == 1


def test_dedicated_pods_get_whole_cores_on_one_node_from_decide() -> None:
    state = node(
        pod("db", cpu="4", memory=GIB, guaranteed=True, tier="dedicated"),
        pod("cache", cpu="2", memory=GIB, guaranteed=True, tier="dedicated"),
        capacity=NodeCapacity(16000, 64 * GIB),
    )
    snap = snapshot(1.0, state=state, cpus=ALL)._replace(topology=TWO_NODES)
    plan, _ = decide(snap, BrainState(), QosSettings(), 1.0)
    got = {d.pod: d.cpus for d in plan.dedicated_pods}
    for pod_key, want in (("default/db", 4), ("default/cache", 2)):
        cpus = got[pod_key]
        assert len(cpus) == want and len(cores(cpus)) == want // 2 and len(nodes(cpus)) == 1
    db = next(d for d in plan.dedicated_pods if d.pod == "default/db")
    assert "(2 cores on NUMA node" in db.reason


STATE = {
    "policyName": "static",
    "defaultCpuSet": "0-1,4-7",
    "entries": {"uid-db": {"main": "2-3"}, "uid-other": {"a": "8", "b": "9"}},
    "checksum": 3134386281,
}


def test_the_checkpoint_is_parsed() -> None:
    k = parse_cpu_manager_state(STATE)
    assert k.owns_cpusets and k.shared == (0, 1, 4, 5, 6, 7)
    assert dict(k.pods) == {"uid-db": (2, 3), "uid-other": (8, 9)}
    assert not parse_cpu_manager_state({"policyName": "none", "defaultCpuSet": ""}).owns_cpusets


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({}, "policyName: missing"),
        ({"policyName": "static", "entries": []}, "entries: expected a map"),
        ({"policyName": "static", "defaultCpuSet": "0-x"}, "defaultCpuSet: '0-x' is not"),
        ({"policyName": "static", "entries": {"u": {"c": 3}}}, "entries.u.c: expected a CPU"),
    ],
)
def test_a_bad_checkpoint_is_refused_with_one_line(data: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cpu_manager_state(data)


def test_the_checkpoint_file_is_read_on_change_and_unparseable_means_hands_off(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cpu_manager_state"
    reader = CpuManagerState(path)
    assert reader.read() is None  # no CPU manager state: colocd picks CPUs itself
    path.write_text(json.dumps(STATE))
    assert reader.read() == parse_cpu_manager_state(STATE)
    path.write_text("{not json")
    broken = reader.read()
    assert broken is not None and broken.owns_cpusets and not broken.pods


def test_decide_defers_to_kubelets_static_assignment() -> None:
    state = node(
        pod("db", cpu="2", memory=GIB, guaranteed=True, tier="dedicated"),
        pod("nocores", cpu="1", memory=GIB, guaranteed=True, tier="dedicated"),
        pod("web", cpu="500m", memory=GIB),
        pod("job", batch_cpu=2000),
    )
    kubelet = KubeletCpus("static", (0, 1, 4, 5, 6, 7), {"uid-db": (2, 3)})
    snap = snapshot(1.0, state=state, cpus=tuple(range(8)))._replace(kubelet_cpus=kubelet)
    s = QosSettings.model_validate({"cpu": {"mechanism": "cpuset"}})
    plan, _ = decide(snap, BrainState(), s, 1.0)
    (db,) = plan.dedicated_pods
    assert db.by_kubelet and db.cpus == (2, 3) and "defers" in db.reason
    assert plan.kubelet_cpusets
    assert plan.shared_cpus is not None and plan.shared_cpus.cpus == (0, 1, 4, 5, 6, 7)
    cap = plan.batch_tier.cpu_cap
    assert isinstance(cap, CpusetCap) and set(cap.cpus) <= {0, 1, 4, 5, 6, 7}
    assert any("nocores has no exclusive CPUs from kubelet" in n for n in plan.notes)


def test_sysfs_topology_is_read_from_a_configurable_root(tmp_path: Path) -> None:
    # A 2-core, 4-thread, 2-node machine laid out as sysfs does (siblings 0,2 and 1,3).
    for cpu, (siblings, numa) in enumerate([("0,2", 0), ("1,3", 1), ("0,2", 0), ("1,3", 1)]):
        d = tmp_path / f"cpu{cpu}"
        (d / "topology").mkdir(parents=True)
        (d / "topology" / "thread_siblings_list").write_text(siblings + "\n")
        (d / f"node{numa}").mkdir()
    (tmp_path / "cpufreq").mkdir()  # not a CPU
    topo = read_topology(tmp_path)
    assert topo.cpus == (
        CpuInfo(0, 0, 0),
        CpuInfo(1, 1, 1),
        CpuInfo(2, 0, 0),
        CpuInfo(3, 1, 1),
    )
    assert read_topology(tmp_path / "absent") == CpuTopology()
    real = read_topology()  # this machine: every CPU read, each in a core
    assert real.cpus and all(c.core <= c.cpu for c in real.cpus)
