"""`colocd run` on Kubernetes: pods from the API server (the kmock double, over real HTTP
with the real client), the ColocationPolicy in force as the brain's settings, the budgets
published on the Node, and the cgroups of a kubelet-like tree on real v1 cgroups."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from agent.report.status import read_status
from isolation.detect import Hierarchy
from isolation.knobs import CpuMax
from isolation.layout import Driver
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import BATCH_CPU, Container, Pod, Resources
from tests.cgroups.test_agent_run_vetting import expected, pods_with_faults
from tests.kube.apiserver import ApiServer
from tests.kube.objects import node, policy

pytestmark = pytest.mark.cgroup_v1

NODE = "node-1"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer()
    try:
        yield server
    finally:
        server.close()


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": url}}],
                "users": [{"name": "test", "user": {}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    return path


def test_one_tick_follows_the_policy_publishes_the_budget_and_enforces_it(
    hierarchy: Hierarchy, api: ApiServer, tmp_path: Path
) -> None:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        web = tree.add_pod(
            Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))
        )
        job = tree.add_pod(
            Pod("jobs", "job", containers=(Container("c", Resources({BATCH_CPU: Decimal(500)})),))
        )
        tree.spawn(job, "c", list(BUSY_LOOP))
        api.create(node(NODE, cpu="2", memory="4Gi"))
        for pod in (web, job):
            api.create(tree.bound(pod, NODE))
        # The policy in force asks for the quota mechanism (the built-in default is cpuset).
        quota = {"scope": "Cluster", "isolation": {"cpu": {"suppress": "quota"}}}
        api.create(policy("cluster-default", quota))
        state = tmp_path / "state"
        argv = ["run", "--once", "--node-name", NODE, "--node-cpu", "2", "--node-memory", "4Gi"]
        argv += ["--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", api.url))]
        argv += ["--kubelet-cgroup-root", tree.root, "--state-dir", str(state)]
        argv += ["--config", str(_config(tmp_path, tree.root))]
        assert main(argv) == 0

        status = read_status(state)
        assert status.node == NODE and status.pods["online"] == 1 and status.pods["batch"] == 1
        cpu = status.budgets[0]
        published = api.get(node(NODE))
        assert published is not None
        capacity = published["status"]["capacity"]
        assert capacity["colocd.io/batch-cpu"] == str(cpu.amount)
        assert "colocd.io/batch-memory" in capacity
        be = tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
        # SCHED_IDLE on the batch pod, not on besteffort (whose weight kubelet rewrites).
        assert tree.cgroups.read("cpu.idle", tree.pod_cgroup(job)).value is True
        assert tree.cgroups.read("cpu.idle", be).value is False
        every = tree.cgroups.read("cpuset.cpus", tree.root).value
        assert tree.cgroups.read("cpuset.cpus", be).value == every  # no cpuset cap
        quota_us = max(100, cpu.amount) * 100
        assert tree.cgroups.read("cpu.max", be).value == CpuMax(quota_us, 100_000)
        assert any(why.startswith("batch quota") for why in status.batch_tier)


def _config(tmp_path: Path, root: str) -> Path:
    """The node is the tree's root cgroup (other work on this machine is not the node's)."""
    path = tmp_path / "colocd.json"
    path.write_text(json.dumps({"agent": {"node_cgroup": root}}))
    return path


def test_run_on_kubernetes_sends_warning_events_about_the_faults(
    hierarchy: Hierarchy, api: ApiServer, tmp_path: Path
) -> None:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        web, odd, copy = pods_with_faults(tree)
        api.create(node(NODE, cpu="2", memory="4Gi"))
        for p in (web, odd):
            api.create(tree.bound(p, NODE))
        copy["spec"]["nodeName"] = NODE
        api.create_silently(copy)  # the API server would never hand out a UID twice
        state = tmp_path / "state"
        config = tmp_path / "colocd.json"
        config.write_text(json.dumps({"agent": {"node_cgroup": tree.root}}))
        argv = ["run", "--once", "--node-name", NODE, "--node-cpu", "2", "--node-memory", "4Gi"]
        argv += ["--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", api.url))]
        argv += ["--kubelet-cgroup-root", tree.root, "--state-dir", str(state)]
        argv += ["--config", str(config), "--no-fast-path", "--revert-on-exit"]
        assert main(argv) == 0
        events = [
            r.body
            for r in api.requests()
            if r.method == "POST" and r.path.endswith("/events") and r.body["type"] == "Warning"
        ]
        by_reason = {e["reason"]: e for e in events}
        duplicate, junk = expected(web)
        dup = by_reason["DuplicateUID"]
        assert dup["involvedObject"]["name"] == "web-copy"
        assert f"pod jobs/web-copy: {dup['message']}" == duplicate
        bad = by_reason["InvalidTierAnnotation"]
        assert bad["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": "odd",
            "namespace": "jobs",
            "uid": odd.uid,
        }
        assert f"pod jobs/odd: {bad['message']}" == junk
        status = read_status(state)
        assert duplicate in status.notes and junk in status.notes
        assert status.pods["online"] == 1 and status.pods["batch"] == 1


def test_the_brain_plans_with_the_nodes_allocatable_and_says_so(
    hierarchy: Hierarchy, api: ApiServer, tmp_path: Path
) -> None:
    """kubelet gives pods the Node's allocatable (capacity less the reservations), not the
    host's totals: the budgets are computed from it and their reasons name it, and what
    kubelet keeps outside it for node daemons is not kept a second time."""
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        web = tree.add_pod(
            Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))
        )
        obj = node(NODE, cpu="2", memory="4Gi")
        obj["status"]["allocatable"] |= {"cpu": "1500m", "memory": "3Gi"}
        api.create(obj)
        api.create(tree.bound(web, NODE))
        state = tmp_path / "state"
        argv = ["run", "--once", "--node-name", NODE, "--state-dir", str(state)]
        argv += ["--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", api.url))]
        argv += ["--kubelet-cgroup-root", tree.root, "--config", str(_config(tmp_path, tree.root))]
        assert main(argv) == 0

        cpu, memory = read_status(state).budgets[:2]
        assert "= capacity 1500m (Node allocatable) x" in cpu.reason, cpu.reason
        assert "= capacity 3.00Gi (Node allocatable) x" in memory.reason, memory.reason
        # capacity 2 cores / 4Gi less allocatable: 500m and 1Gi (less kubelet's 100Mi
        # eviction threshold, which stays free) are already outside capacity.
        assert "less 500m kubelet already keeps outside allocatable)" in cpu.reason
        kept = "less 924Mi kubelet already keeps outside allocatable (1.00Gi less its 100Mi"
        assert kept in memory.reason, memory.reason
