"""Installing and removing colocd: the DaemonSet runs the image `make image` builds, clean
removal (deploy/clean-removal) reverts on exit with time to do it, and the uninstall
DaemonSet (deploy/uninstall/revert.yaml) runs `colocd revert` on every node. Every manifest
validates against a current Kubernetes' schema."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def agent_daemonset() -> dict[str, Any]:
    return docs(DEPLOY / "daemonset.yaml")[0]


def test_the_daemonset_runs_the_image_make_image_builds() -> None:
    tag = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), "--print-tag"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    pod = agent_daemonset()["spec"]["template"]["spec"]
    agent = pod["containers"][0]
    assert agent["image"] == tag
    # The image's entrypoint is `colocd run`: the args are run's own flags.
    run = build_parser().parse_args(["run", *agent["args"]])
    assert run.command == "run" and run.cgroup_root == "/host/sys/fs/cgroup"
    assert not run.revert_on_exit  # a restart keeps the enforcement (clean-removal adds it)
    assert pod["terminationGracePeriodSeconds"] >= 30


def test_the_uninstall_daemonset_reverts_every_node_with_the_agents_journal() -> None:
    (revert,) = docs(DEPLOY / "uninstall" / "revert.yaml")
    kubernetes_validate.validate(revert, K8S_VERSION, strict=True)
    pod = revert["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    args = build_parser().parse_args(init["command"][1:])
    assert init["command"][0] == "/opt/colocd/bin/colocd" and args.command == "revert"
    agent_pod = agent_daemonset()["spec"]["template"]["spec"]
    agent = agent_pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert args.state_dir == mounts["state"] and args.cgroup_root == mounts["cgroup"]
    assert init["image"] == agent["image"]
    # The revert sees the node's tree and journal exactly as the agent did.
    agent_volumes = {v["name"]: v for v in agent_pod["volumes"]}
    assert {"state", "cgroup"} <= {v["name"] for v in pod["volumes"]}
    assert all(agent_volumes[v["name"]] == v for v in pod["volumes"])
    security = init["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsUser"] == agent["securityContext"]["runAsUser"] == 0
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert {"operator": "Exists"} in pod["tolerations"]  # every node, tainted or not


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_clean_removal_reverts_on_exit_and_before_sigterm(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    kustomization = tmp_path / "deploy" / "kustomization.yaml"
    text = kustomization.read_text()
    assert "# components:\n#   - clean-removal\n" in text  # what its header tells users
    kustomization.write_text(text.replace("# components:\n#   - ", "components:\n  - "))
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "deploy")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rendered = [d for d in yaml.safe_load_all(out) if d]
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    ds = next(d for d in rendered if d["kind"] == "DaemonSet")
    agent = ds["spec"]["template"]["spec"]["containers"][0]
    assert build_parser().parse_args(["run", *agent["args"]]).revert_on_exit
    pre_stop = agent["lifecycle"]["preStop"]["exec"]["command"]
    assert build_parser().parse_args(pre_stop[1:]).command == "revert"
