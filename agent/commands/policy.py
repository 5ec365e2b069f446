"""`colocd policy`: resolve and validate ColocationPolicies offline, print the CRD, and run
the small controller that writes the policies' status."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, start_http_server

from agent.act.events import EventRecorder
from agent.cli_support import Reporter, format_labels, parse_labels, report_policy_load
from agent.errors import ConfigError
from agent.policy.crd import render_crd
from agent.policy.load import load_policies
from agent.policy.model import ColocationPolicy, Section
from agent.policy.resolve import Resolution, field_paths, resolve
from agent.policy.status import run_status_controller
from agent.report.metrics import KubeMetrics
from agent.report.output import render_table
from agent.sources.kube import KubeClient
from agent.sources.units import parse_duration

log = logging.getLogger(__name__)

HELP = "resolve and validate ColocationPolicies; print the CRD; run the status controller"
DESCRIPTION = """\
ColocationPolicy objects (colocd.io/v1alpha1, cluster-scoped) tune colocd in layers:

  Cluster    the default for every node (one is expected)
  NodePool   nodes matching spec.nodeSelector; spec.priority orders overlapping pools
  Node       the nodes named in spec.nodeNames

A node's effective policy merges them field by field: built-in defaults < Cluster <
NodePool (lower priority first) < Node. At equal rank the policy whose name sorts first
wins, and the tie is reported. Workload overrides (spec.workloads) pick pods by label."""

RESOLVE_DESCRIPTION = """\
Print the effective policy of one node and, for every field, the policy and layer that set
it (provenance), the ties that were decided by name order, and the workload overrides.

FILE is a YAML or JSON file of ColocationPolicy documents (several per file, List documents
and directories allowed), e.g. what `kubectl get colocationpolicies -o yaml` prints.
Invalid policies are reported on stderr and left out, as the agent would leave them out.

Exit status: 0 when everything was valid, 1 when a policy or the merged result was not."""
RESOLVE_EPILOG = """\
examples:
  colocd policy resolve --node gpu-7 --labels colocd.io/pool=gpu deploy/examples/
  kubectl get colocationpolicies -o yaml | colocd policy resolve --node n1 -o json -"""

VALIDATE_DESCRIPTION = """\
Check ColocationPolicy files offline with the same rules the agent applies (schema, units
such as "500m", "2Gi", "5m", "200Mbit", scope rules). Each problem is one line on stderr:
the file, the document index and the field path. Warns about policies of equal rank that
will be decided by name order.

Exit status: 0 when every policy is valid, 1 otherwise."""

CONTROLLER_DESCRIPTION = """\
Watch ColocationPolicies and the nodes' labels and keep each policy's status current:
the Valid condition (with the reason when it is not), how many nodes it applies to
(matchedNodes) and observedGeneration. Writes only on change, at most once per policy per
--min-write-interval, and emits a Warning Event when a policy becomes invalid. Run exactly
one (deploy/policy-controller.yaml); the node agents never write policy status."""

COLUMNS = (("FIELD", "field"), ("SET BY", "source"), ("VALUE", "value"))


def register(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("policy", help=HELP, description=DESCRIPTION, formatter_class=raw)
    actions = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    r = actions.add_parser(
        "resolve",
        help="print a node's effective policy with provenance",
        description=RESOLVE_DESCRIPTION,
        epilog=RESOLVE_EPILOG,
        formatter_class=raw,
    )
    r.add_argument("--node", required=True, metavar="NAME", help="the node's name")
    r.add_argument(
        "--labels",
        type=parse_labels,
        default={},
        metavar="K=V,...",
        help="the node's labels, which decide the NodePool policies (default: none)",
    )
    r.add_argument(
        "-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format"
    )
    r.add_argument("paths", nargs="+", metavar="FILE", help="policy file, directory or -")
    r.set_defaults(func=run_resolve)

    v = actions.add_parser(
        "validate",
        help="check policy files offline",
        description=VALIDATE_DESCRIPTION,
        epilog="example:\n  colocd policy validate deploy/examples/",
        formatter_class=raw,
    )
    v.add_argument("paths", nargs="+", metavar="FILE", help="policy file, directory or -")
    v.set_defaults(func=run_validate)

    c = actions.add_parser(
        "crd",
        help="print the CustomResourceDefinition (generated from the model)",
        description="Print the ColocationPolicy CRD, generated from the pydantic model "
        "(this is how deploy/crd.yaml is made).",
    )
    c.set_defaults(func=run_crd)

    k = actions.add_parser(
        "controller",
        help="keep the policies' status (validity, matched nodes) current",
        description=CONTROLLER_DESCRIPTION,
        formatter_class=raw,
    )
    k.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: in-cluster)")
    k.add_argument("--context", metavar="NAME", help="kubeconfig context")
    k.add_argument(
        "--interval", type=_duration, default=5.0, metavar="DURATION", help="check period (5s)"
    )
    k.add_argument(
        "--min-write-interval",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="least time between two status writes of one policy (10s)",
    )
    k.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve /metrics here")
    k.set_defaults(func=run_controller)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# --- resolve -------------------------------------------------------------------------------


def _plain(section: Section) -> dict[str, Any]:
    return section.model_dump(by_alias=True, exclude_none=True, mode="json")


def _effective(resolution: Resolution) -> dict[str, Any]:
    return resolution.settings.model_dump(by_alias=True, exclude_none=True, mode="json")


def _value_at(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        node = node[part]
    return node


def resolution_document(resolution: Resolution) -> dict[str, Any]:
    """The resolution as plain data (-o json|yaml)."""
    return {
        "node": resolution.node,
        "labels": dict(resolution.labels),
        "applied": [s.as_dict() for s in resolution.applied],
        "effective": _effective(resolution),
        "provenance": {path: s.as_dict() for path, s in resolution.provenance.items()},
        "ties": [
            {
                "field": t.field,
                "winner": t.winner.as_dict(),
                "losers": [s.as_dict() for s in t.losers],
            }
            for t in resolution.ties
        ],
        "workloads": [
            {**_plain(w.override), "source": w.source.as_dict()} for w in resolution.workloads
        ],
        "problems": list(resolution.problems),
    }


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _print_table(resolution: Resolution) -> None:
    effective = _effective(resolution)
    labels = format_labels(resolution.labels)
    applied = ", ".join(str(s) for s in resolution.applied) or "none (built-in defaults only)"
    print(f"node {resolution.node} (labels: {labels})")
    print(f"policies applied, weakest first: {applied}")
    print()
    rows = [
        {
            "field": path,
            "value": _cell(_value_at(effective, path)),
            "source": str(resolution.provenance[path]),
        }
        for path in field_paths()
    ]
    print(render_table(rows, COLUMNS))
    if resolution.workloads:
        print("\nworkload overrides (first match wins):")
        for w in resolution.workloads:
            body = {k: v for k, v in _plain(w.override).items() if k != "name"}
            print(f"  {w.override.name}: {_cell(body)}  [{w.source}]")
    if resolution.ties:
        print("\nties decided by name order:")
        for tie in resolution.ties:
            print(f"  {tie}")
    sys.stdout.flush()


def run_resolve(args: argparse.Namespace) -> int:
    report = Reporter()
    loaded = load_policies(args.paths)
    report_policy_load(loaded, report)
    if not loaded.policies and not loaded.errors:
        report.warning("no ColocationPolicy documents in " + " ".join(args.paths))
    resolution = resolve((p.policy for p in loaded.policies), args.node, args.labels)
    for problem in resolution.problems:
        report.error(f"resolve node {args.node}: {problem}")
    if args.output == "json":
        print(json.dumps(resolution_document(resolution)), flush=True)
    elif args.output == "yaml":
        print(yaml.safe_dump(resolution_document(resolution), sort_keys=False), end="", flush=True)
    else:
        _print_table(resolution)
    return 1 if report.failed else 0


# --- validate ------------------------------------------------------------------------------


def rank_warnings(policies: Iterable[ColocationPolicy]) -> list[str]:
    """Policies of equal rank that name order will decide between where they overlap."""
    groups: dict[tuple[str, int], list[str]] = {}
    for p in policies:
        if p.spec.scope != "Node":
            groups.setdefault((p.spec.scope, p.spec.priority or 0), []).append(p.name)
    warnings = []
    for (scope, priority), names in sorted(groups.items()):
        if len(names) > 1:
            names.sort()
            rank = "Cluster" if scope == "Cluster" else f"NodePool priority {priority}"
            warnings.append(
                f"policies {', '.join(names)} share rank {rank}: where they set the same field "
                f"for a node, {names[0]} wins by name order"
            )
    return warnings


def run_validate(args: argparse.Namespace) -> int:
    report = Reporter()
    loaded = load_policies(args.paths)
    report_policy_load(loaded, report)
    for item in loaded.policies:
        spec = item.policy.spec
        print(f"ok: {item.where}: ColocationPolicy {item.policy.name} ({spec.scope})", flush=True)
    for warning in rank_warnings(p.policy for p in loaded.policies):
        report.warning(warning)
    if not loaded.policies and not loaded.errors:
        report.error("validate " + " ".join(args.paths) + ": no ColocationPolicy documents found")
    return 1 if report.failed else 0


# --- crd and controller ----------------------------------------------------------------------


def run_crd(args: argparse.Namespace) -> int:
    sys.stdout.write(render_crd())
    sys.stdout.flush()
    return 0


def _serve_metrics(addr: str, registry: CollectorRegistry) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"serve metrics on {addr!r}: expected HOST:PORT")
    try:
        start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    except OSError as err:
        raise ConfigError(f"serve metrics on {addr}: {err}") from err


def run_controller(args: argparse.Namespace) -> int:
    client = KubeClient.connect(args.kubeconfig, args.context)
    registry = CollectorRegistry()
    metrics = KubeMetrics(registry)
    if args.metrics_addr:
        _serve_metrics(args.metrics_addr, registry)
    recorder = EventRecorder(client, host=socket.gethostname(), metrics=metrics)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("policy controller started")
    try:
        run_status_controller(
            client,
            metrics,
            recorder,
            stop,
            interval_s=args.interval,
            min_write_interval_s=args.min_write_interval,
        )
    finally:
        client.close()
    return 0
