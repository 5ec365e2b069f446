"""`colocd classify`: put pods from manifests into Kubernetes QoS classes and colocd tiers."""

from __future__ import annotations

import argparse

from agent.cli_support import Reporter, add_output_flag
from agent.report.output import emit
from agent.sources.manifests import load_pods
from qos.errors import TierAnnotationError
from qos.tiers import DEFAULT_TIER_SETTINGS, classify

HELP = "classify pods from manifests into QoS classes and colocd tiers"
DESCRIPTION = """\
Read Pod manifests and print, for each pod, its Kubernetes QoS class (computed exactly as
Kubernetes does, after the API server's defaulting) and its colocd tier with the reason.

PATH is a YAML or JSON file (several YAML documents allowed), a directory (searched for
*.yaml, *.yml and *.json), or - for standard input. Pod, PodList and List documents are
read; other kinds are skipped with a warning on stderr.

Tier order: the colocd.io/tier annotation, then requests for colocd.io/batch-* resources,
then policy rules (kube-system and system priority classes are `system` by default),
then the QoS class (Guaranteed/Burstable -> online, BestEffort -> batch).

Exit status: 0 if every pod was classified, 1 if any document or pod failed (the others
are still printed), 2 for bad usage."""
EPILOG = """\
examples:
  colocd classify examples/
  colocd classify -o json pod.yaml | jq .tier
  kubectl get pods -o yaml | colocd classify -"""

COLUMNS = (
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("QOS", "qosClass"),
    ("TIER", "tier"),
    ("REASON", "reason"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest file, directory or -")
    add_output_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = Reporter()
    loaded = load_pods(args.paths)
    for w in loaded.warnings:
        report.warning(w)
    for err in loaded.errors:
        report.error(str(err))
    rows = []
    for item in loaded.pods:
        pod = item.pod
        try:
            decision = classify(pod, DEFAULT_TIER_SETTINGS, strict=True)
        except TierAnnotationError as err:
            report.error(f"{item.source}[doc {item.index}]: {err}")
            continue
        rows.append(
            {
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
                "qosClass": decision.qos_class.value,
                "tier": decision.tier.value,
                "reason": decision.reason,
            }
        )
    emit(rows, args.output, COLUMNS)
    if not rows and not report.failed:
        report.warning("no pods found in " + " ".join(args.paths))
    return 1 if report.failed else 0
