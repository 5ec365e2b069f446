"""Discovery of pods' cgroups on real kubelet-like trees, `colocd discover`, and hostile
names that try to reach outside the cgroup root."""

from __future__ import annotations

import dataclasses
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import main
from isolation.discovery import discover_pod
from isolation.errors import UnsafeNameError
from isolation.executor import Executor, Outcome, Write
from isolation.journal import Journal
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, ContainerRuntimeID, Pod, Resources

pytestmark = pytest.mark.cgroup_v1

GUARANTEED = Resources(
    {"cpu": Decimal(1), "memory": Decimal(2**28)}, {"cpu": Decimal(1), "memory": Decimal(2**28)}
)


def pods() -> list[Pod]:
    return [
        Pod("shop", "web", containers=(Container("app", GUARANTEED),)),
        Pod("jobs", "spark", containers=(Container("exec"), Container("log"))),
        Pod("shop", "api", containers=(Container("app", Resources({"cpu": Decimal("0.1")})),)),
    ]


@pytest.mark.cgroup_v2
def test_every_pod_and_container_is_found(tree: KubeletTree) -> None:
    built = [tree.add_pod(p) for p in pods()]
    for pod in built:
        found = discover_pod(pod, tree.cgroups, tree.layout)
        assert found.missing == ()
        assert found.cgroup == tree.pod_cgroup(pod)
        assert found.containers == {c: tree.container_cgroup(pod, c) for c in pod.container_ids}


def test_missing_pods_and_containers_are_reported_and_nothing_is_created(
    tree: KubeletTree,
) -> None:
    web, spark, api = pods()
    spark = tree.add_pod(spark)
    absent = dataclasses.replace(web, uid="0c7f5a1e-3d2b-4e8a-b6c9-1a2b3c4d5e6f")
    found = discover_pod(absent, tree.cgroups, tree.layout)
    assert found.cgroup is None
    assert found.missing == (f"pod cgroup {tree.layout.pod_cgroup(found.qos_class, absent.uid)}",)
    assert not any(p.exists() for p in tree.cgroups.dirs(found.missing[0].split()[-1]).values())
    # One container without an ID in status, one whose scope is gone.
    ids = dict(spark.container_ids)
    del ids["log"]
    ids["exec"] = ContainerRuntimeID("containerd", "b" * 64)
    found = discover_pod(dataclasses.replace(spark, container_ids=ids), tree.cgroups, tree.layout)
    assert found.cgroup == tree.pod_cgroup(spark)
    assert found.containers == {}
    assert found.missing[0].startswith("container exec cgroup ")
    assert found.missing[1] == "container log (no containerID in status)"
    assert discover_pod(api, tree.cgroups, tree.layout).missing == (
        "pod UID (the manifest has none)",
    )


@pytest.mark.cgroup_v2
def test_discover_command_prints_one_json_object_per_pod(
    tree: KubeletTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = [tree.add_pod(p) for p in pods()]
    gone = dataclasses.replace(built[0], name="gone", uid="0c7f5a1e-3d2b-4e8a-b6c9-1a2b3c4d5e6f")
    for pod in [*built, gone]:
        (tmp_path / f"{pod.name}.yaml").write_text(yaml.safe_dump(tree.manifest(pod)))
    argv = ["discover", "--pods", str(tmp_path), "--kubelet-cgroup-root", tree.root, "-o", "json"]
    assert main(argv) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == {"web", "spark", "api", "gone"}
    web = rows["web"]
    assert (web["qosClass"], web["tier"], web["driver"]) == (
        "Guaranteed",
        "online",
        tree.layout.driver.value,
    )
    assert web["cgroupVersion"] == tree.cgroups.version
    if tree.cgroups.version == 1:
        assert set(web["podCgroup"]) >= {"cpu", "cpuacct", "memory", "cpuset", "freezer"}
        assert all(Path(p).is_dir() for p in web["podCgroup"].values())
        assert web["containers"]["app"] == "/" + tree.container_cgroup(built[0], "app")
    else:
        assert Path(web["podCgroup"]).is_dir()
        assert Path(web["containers"]["app"]).is_dir()
    assert rows["spark"]["tier"] == "batch" and set(rows["spark"]["containers"]) == {"exec", "log"}
    assert rows["gone"]["podCgroup"] is None and rows["gone"]["missing"][0].startswith("pod cgroup")


def snapshot(tree: KubeletTree, canary: Path) -> tuple[Any, ...]:
    """Every directory in the tree, in every hierarchy, and the canary file's state."""
    dirs = sorted(d for m in tree.mounts.values() for d, _, _ in os.walk(m / tree.root))
    stat = canary.stat()
    return (dirs, canary.read_text(), stat.st_mtime_ns, sorted(os.listdir(canary.parent)))


@pytest.mark.cgroup_v2
def test_hostile_names_are_refused_and_nothing_outside_the_root_is_touched(
    tree: KubeletTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = tree.add_pod(pods()[1])
    canary = tmp_path / "outside" / "canary"
    canary.parent.mkdir()
    canary.write_text("untouched")
    pod_dir = next(iter(tree.cgroups.dirs(tree.pod_cgroup(pod)).values()))
    climb = os.path.relpath(canary.parent, pod_dir)  # ../../.. from the pod's cgroup
    before = snapshot(tree, canary)

    hostile_uid = dataclasses.replace(pod, name="uid", uid=f"{climb}/x")
    hostile_cid = dataclasses.replace(
        pod, name="cid", container_ids={"exec": ContainerRuntimeID("containerd", f"{climb}/x")}
    )
    hostile_tier = dataclasses.replace(
        pod, name="tier", annotations={"colocd.io/tier": f"{climb}/x"}
    )
    for bad in (hostile_uid, hostile_cid):
        with pytest.raises(UnsafeNameError):
            discover_pod(bad, tree.cgroups, tree.layout)
    manifests = tmp_path / "pods"
    manifests.mkdir()
    for bad in (hostile_uid, hostile_cid, hostile_tier):
        (manifests / f"{bad.name}.yaml").write_text(yaml.safe_dump(tree.manifest(bad)))
    argv = ["discover", "--pods", str(manifests), "--kubelet-cgroup-root", tree.root]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert any("use pod UID" in line and "not a UUID" in line for line in err)
    assert any("use container ID" in line for line in err)
    assert any("annotation colocd.io/tier" in line for line in err)
    # The executor refuses the same climb in a cgroup path, before reading or writing.
    ex = Executor(
        tree.cgroups, Journal(tmp_path / "state", str(tree.hierarchy.root), tree.cgroups.version)
    )
    target = f"{tree.pod_cgroup(pod)}/{climb}"
    report = ex.apply([Write("pids.max", target, 1), Write("freeze", target, True)])
    assert [r.outcome for r in report.results] == [Outcome.FAILED] * 2
    assert all("is not allowed" in r.reason for r in report.results)
    assert snapshot(tree, canary) == before
    assert not (tmp_path / "state" / "cgroup-journal.jsonl").exists()
