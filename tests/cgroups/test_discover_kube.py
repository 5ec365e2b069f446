"""`colocd discover --kubeconfig`: pods come from the API server (real client over HTTP
against the kmock-based double) and are looked up in a real kubelet-like tree."""

from __future__ import annotations

import json
import uuid

import pytest

from agent.cli import main
from isolation.layout import Driver, Runtime
from lab.kubelet_tree import KubeletTree
from tests.cgroups.test_agent_on_kubernetes import kubeconfig
from tests.kube.apiserver import ApiServer
from tests.kube.objects import pod

pytestmark = pytest.mark.cgroup_v1


def test_discover_reads_this_nodes_pods_from_the_api_server(tmp_path, capsys):
    api = ApiServer()
    try:
        with KubeletTree(Driver.CGROUPFS, Runtime.CONTAINERD) as tree:
            mine = pod("web", node="node-1")
            mine["metadata"]["uid"] = str(uuid.uuid4())
            api.create(mine)
            api.create(pod("elsewhere", node="node-2"))
            code = main(
                [
                    "discover",
                    "--kubeconfig",
                    str(kubeconfig(tmp_path / "kubeconfig", api.url)),
                    "--node-name",
                    "node-1",
                    "--kubelet-cgroup-root",
                    tree.root,
                    "-o",
                    "json",
                ]
            )
            out, err = capsys.readouterr()
    finally:
        api.close()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == ["web"]
    assert rows[0]["missing"], "the API's pod has no cgroup in the tree: reported missing"


def test_discover_without_a_node_name_says_how_to_give_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NODE_NAME", raising=False)
    with KubeletTree(Driver.CGROUPFS, Runtime.CONTAINERD) as tree:
        code = main(
            ["discover", "--kubeconfig", str(tmp_path / "kc"), "--kubelet-cgroup-root", tree.root]
        )
    _, err = capsys.readouterr()
    assert code == 1
    assert "pass --node-name or set NODE_NAME" in err
    assert len(err.strip().splitlines()) == 1
