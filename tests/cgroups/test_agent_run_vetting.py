"""`colocd run` with pods that classify/discover refuse (issue 11): a UID seen twice and a
junk colocd.io/tier annotation. The agent keeps going, plans without the fault, and says so
in its log and in the status file (the Events on Kubernetes: test_agent_on_kubernetes)."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.report.status import read_status
from isolation.detect import Hierarchy
from isolation.layout import Driver
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod, Resources

pytestmark = pytest.mark.cgroup_v1


def pods_with_faults(tree: KubeletTree) -> tuple[Pod, Pod, dict[str, Any]]:
    """An online pod, a BestEffort pod annotated `colocd.io/tier: gold`, and a BestEffort
    manifest that carries the online pod's UID (a copy-paste gone wrong)."""
    web = tree.add_pod(
        Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))
    )
    odd = tree.add_pod(
        Pod("jobs", "odd", annotations={"colocd.io/tier": "gold"}, containers=(Container("c"),))
    )
    copy = tree.manifest(web)
    copy["metadata"].update(name="web-copy", namespace="jobs")
    for c in copy["spec"]["containers"]:
        c["resources"] = {}
    return web, odd, copy


def expected(web: Pod) -> tuple[str, str]:
    return (
        f"pod jobs/web-copy: UID {web.uid} is also pod shop/web's (online); left out of the "
        "plan, shop/web keeps the cgroup",
        "pod jobs/odd: annotation colocd.io/tier='gold' is not one of system, dedicated, "
        "online, batch; ignored; tier batch (QoS class BestEffort defaults to batch)",
    )


def test_run_on_a_pod_directory_warns_and_plans_without_the_faults(
    hierarchy: Hierarchy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        web, odd, copy = pods_with_faults(tree)
        pods = tmp_path / "pods"
        pods.mkdir()
        for p in (web, odd):
            tree.write_manifest(p, pods)
        (pods / "jobs_web-copy.json").write_text(json.dumps(copy))
        state = tmp_path / "state"
        argv = ["run", "--once", "--pods", str(pods), "--kubelet-cgroup-root", tree.root]
        argv += ["--state-dir", str(state), "--no-fast-path", "--revert-on-exit"]
        with caplog.at_level(logging.WARNING, logger="agent.loop"):
            assert main(argv) == 0
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        duplicate, junk = expected(web)
        assert duplicate in logged and junk in logged
        status = read_status(state)
        assert duplicate in status.notes and junk in status.notes
        # The copy is not planned as a second, batch, pod in the online pod's cgroup.
        assert status.pods["online"] == 1 and status.pods["batch"] == 1
