"""`colocd discover`: find each pod's cgroups on this node, and say what is missing."""

from __future__ import annotations

import argparse
from typing import Any

from prometheus_client import CollectorRegistry

from agent.cli_support import Reporter, add_output_flag
from agent.config import node_name_from
from agent.errors import SourceError
from agent.report.metrics import KubeMetrics
from agent.report.output import emit
from agent.sources.kube import KubeClient
from agent.sources.manifests import load_pods
from agent.sources.pod_source import ApiPodSource
from isolation.cgroups import Cgroups
from isolation.detect import detect_hierarchy, detect_layout
from isolation.discovery import PodCgroups, discover_pod
from isolation.errors import IsolationError
from isolation.layout import KubeletLayout
from qos.errors import TierAnnotationError
from qos.pod import Pod
from qos.tiers import DEFAULT_TIER_SETTINGS, classify

HELP = "find the cgroups of pods on this node"
DESCRIPTION = """\
Detect the cgroup hierarchy (v1, v2 or hybrid, from /proc/self/mountinfo) and kubelet's
layout (cgroupfs or systemd driver, its cgroup root), then find every pod's cgroup and each
container's (containerd, CRI-O and docker naming) from the pod's UID, QoS class and the
container IDs in its status. Nothing is created or changed.

Pods come from --pods DIR (Pod manifests with status.containerStatuses, as kubelet would
report them) or, with --kubeconfig, from the API server (the pods bound to --node-name).
With -o json each pod is one line: namespace, name, uid, qosClass, tier,
cgroupVersion, driver, podCgroup (absolute directory per controller on v1, one on v2),
containers (name -> cgroup path; on v1 relative to each controller's mount, as
/proc/PID/cgroup shows it) and missing (what was expected and not found).

Exit status: 0 when every pod was looked up (missing cgroups are reported, not errors),
1 when detection failed or a document, UID or container ID was refused, 2 for bad usage."""
EPILOG = """\
examples:
  colocd discover --pods /etc/kubernetes/manifests
  colocd discover --kubeconfig ~/.kube/config --node-name worker-3 -o json
  colocd discover --pods pods/ --kubelet-cgroup-root /kube.slice -o json | jq .missing"""

COLUMNS = (
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("QOS", "qosClass"),
    ("TIER", "tier"),
    ("DRIVER", "driver"),
    ("CGROUP", "cgroup"),
    ("CONTAINERS", "found"),
    ("MISSING", "missing"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "discover",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pods", metavar="DIR", help="directory of Pod manifests")
    source.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="read this node's pods from the API server (with --node-name or NODE_NAME)",
    )
    p.add_argument("--node-name", help="this node's name (default: $NODE_NAME)")
    p.add_argument(
        "--sync-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="how long to wait for the API server's pod list (default 30)",
    )
    add_cgroup_flags(p)
    p.add_argument(
        "--kubelet-cgroup-root",
        metavar="PATH",
        help="kubelet's --cgroup-root (the same relative path under every controller); "
        "found by searching the tree when absent",
    )
    add_output_flag(p)
    p.set_defaults(func=run)


def add_cgroup_flags(p: argparse.ArgumentParser, default: str | None = "/sys/fs/cgroup") -> None:
    p.add_argument(
        "--cgroup-root",
        metavar="PATH",
        default=default,
        help="where the cgroup hierarchies are mounted (default /sys/fs/cgroup)",
    )


def row(found: PodCgroups, tier: str, cgroups: Cgroups, layout: KubeletLayout) -> dict[str, Any]:
    pod = found.pod
    v2 = cgroups.version == 2
    pod_cgroup: Any = None
    if found.cgroup is not None:
        dirs = {name: str(path) for name, path in cgroups.dirs(found.cgroup).items()}
        pod_cgroup = dirs["unified"] if v2 else dirs
    containers = {
        name: str(cgroups.dirs(path)["unified"]) if v2 else "/" + path
        for name, path in found.containers.items()
    }
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "uid": pod.uid,
        "qosClass": found.qos_class.value,
        "tier": tier,
        "cgroupVersion": cgroups.version,
        "driver": layout.driver.value,
        "podCgroup": pod_cgroup,
        "containers": containers,
        "missing": list(found.missing),
        "cgroup": None if found.cgroup is None else "/" + found.cgroup,
        "found": f"{len(found.containers)}/{len(pod.containers)}",
    }


def _pods(args: argparse.Namespace, report: Reporter) -> list[tuple[str, Pod]]:
    """(where it came from, pod) from the manifest directory or the API server."""
    if args.pods is not None:
        loaded = load_pods([args.pods])
        for w in loaded.warnings:
            report.warning(w)
        for err in loaded.errors:
            report.error(str(err))
        return [(f"{i.source}[doc {i.index}]", i.pod) for i in loaded.pods]
    node = node_name_from(args.node_name)
    client = KubeClient.connect(args.kubeconfig)
    source = ApiPodSource(client, node, KubeMetrics(CollectorRegistry()))
    source.start()
    try:
        if not source.wait_synced(args.sync_timeout):
            raise SourceError(
                f"list pods of node {node}: no answer from the API server "
                f"within {args.sync_timeout:g} s"
            )
        snap = source.snapshot()
    finally:
        source.stop()
        client.close()
    for problem in snap.problems:
        report.error(problem)
    return [(f"pod {p.key}", p) for p in snap.pods]


def run(args: argparse.Namespace) -> int:
    report = Reporter()
    try:
        hierarchy = detect_hierarchy(args.cgroup_root)
        layout = detect_layout(hierarchy, args.kubelet_cgroup_root)
    except IsolationError as err:
        report.error(str(err))
        return 1
    cgroups = Cgroups(hierarchy)
    rows = []
    for where, pod in _pods(args, report):
        try:
            tier = classify(pod, DEFAULT_TIER_SETTINGS, strict=True).tier.value
            found = discover_pod(pod, cgroups, layout)
        except (TierAnnotationError, IsolationError) as err:
            report.error(f"{where}: {err}")
            continue
        rows.append(row(found, tier, cgroups, layout))
    if args.output == "json":
        for r in rows:
            del r["cgroup"], r["found"]
    emit(rows, args.output, COLUMNS)
    return 1 if report.failed else 0
