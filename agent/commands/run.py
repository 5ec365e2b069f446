"""`colocd run`: the node agent. Tick, enforce, report; stop cleanly on SIGTERM/SIGINT,
SIGQUIT and SIGHUP.

SIGHUP stops the agent like SIGTERM rather than reloading: what can change while it runs
already follows without a signal (ColocationPolicies are watched, the pod directory is
re-read when it changes), and the rest (cgroup root, state dir, metrics address) cannot be
swapped under a running agent safely. A HUP comes from a terminal that closed: the session
that started the agent is over, so it stops cleanly (reverting with --revert-on-exit)
instead of dying with its values left applied."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry

from agent import config
from agent.act.cgroup_evictor import CgroupEvictor
from agent.act.shaping import revert_network
from agent.cluster import Cluster
from agent.commands.discover import add_cgroup_flags
from agent.errors import ConfigError, InputError
from agent.inputs import check_file
from agent.loop import Loop
from agent.network import NetworkSide
from agent.observe.capacity import node_capacity
from agent.observe.gpus import GpuSource
from agent.policy.network import layered, to_network_settings
from agent.report.metrics import AgentMetrics, serve
from agent.report.output import render_table
from agent.report.sdnotify import SdNotifier
from agent.sources.kube import KubeClient
from agent.sources.pod_source import DirPodSource, PodSource
from agent.sources.quantity import parse_quantity
from agent.tick import TickResult
from isolation.cgroups import Cgroups
from isolation.detect import AGENT_CONTROLLERS, detect_hierarchy, detect_layout
from isolation.errors import CgroupGoneError, IsolationError, UnsupportedKnobError, WriteError
from isolation.executor import Executor, Write
from isolation.journal import FILENAME as JOURNAL_FILE
from isolation.journal import MAX_BYTES as JOURNAL_MAX_BYTES
from isolation.knobs import CpuMax, format_cpuset
from isolation.owner import NodeLock
from qos.pod import CPU, MEMORY
from qos.settings import QosSettings
from qos.state import NodeCapacity

HELP = "run the node agent (tick loop, enforcement, metrics, status)"
DESCRIPTION = """\
Run colocd on this node. Every tick (1 s by default) it reads the pods, finds their
cgroups, reads usage and pressure per tier, lets the brain decide the batch budgets and
settings, applies them to the cgroups (journaling every original value first), and
reports: one log line per tick (-v), Prometheus metrics (--metrics-addr) and a status file
in --state-dir that `colocd status` prints. Between ticks a fast path watches the online
pods and clamps batch at once when online demand surges.

Pods come from the Kubernetes API (the pods bound to --node-name or $NODE_NAME; in-cluster
credentials or --kubeconfig); there the ColocationPolicies in force set the brain's
settings, the budgets are published on the Node (colocd.io/batch-*) and evictions go
through the Eviction API. On a bare host, --pods DIR reads Pod manifests from a directory
instead (like kubelet's static pods, re-read when it changes), and an eviction stops the
pod's processes through its cgroup: SIGTERM, then SIGKILL after agent.kill_grace_s.

Settings come from --config FILE (YAML or JSON with the sections qos, isolation and
agent; see agent/config.py for every field) with these flags laid over it. The node's CPU
and memory the brain plans with are, in this order: --node-cpu/--node-memory, the Node's
allocatable (Kubernetes), kubepods' own limits (cpu.max, memory.max) where set, the
host's totals; the budget reasons name the source.

--dry-run prints the plan and every write it would make (with the value there now) and
writes nothing at all. --once runs a single tick and exits. SIGTERM, SIGINT, SIGQUIT or
SIGHUP stops the loop after the current step; with --revert-on-exit every cgroup value
colocd changed is then written back from the journal (`colocd revert` does the same later).

One agent per node: a second one (same state dir, or the same kubelet tree) refuses to
start and names the first one's PID.

Exit status: 0 on a clean stop, 1 when the agent cannot start (bad settings, no cgroup
hierarchy or kubelet tree, unreadable pod directory, no credentials or node name, another
agent running), a --once tick could not run, or the kernel refused a write for lack of
privilege (EACCES/EPERM: not root) or on a read-only cgroupfs (EROFS), 2 for bad usage."""
EPILOG = """\
examples:
  NODE_NAME=node-7 colocd run --metrics-addr 0.0.0.0:9464      # in a DaemonSet pod
  colocd run --pods /etc/colocd/pods --metrics-addr 127.0.0.1:9464 -v
  colocd run --pods pods/ --once --dry-run
  colocd run --config /etc/colocd/config.yaml --state-dir /var/lib/colocd --revert-on-exit"""

log = logging.getLogger(__name__)

WRITE_COLUMNS = (("KNOB", "knob"), ("CGROUP", "cgroup"), ("NOW", "now"), ("WANT", "want"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML/JSON settings (qos, isolation, agent)")
    p.add_argument(
        "--pods",
        metavar="DIR",
        help="directory of Pod manifests as the pod source (default: the Kubernetes API)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="credentials for the API (default: in-cluster, else ~/.kube/config)",
    )
    add_cgroup_flags(p, default=None)
    p.add_argument(
        "--kubelet-cgroup-root",
        metavar="PATH",
        help="kubelet's --cgroup-root (found by searching the tree when absent)",
    )
    p.add_argument(
        "--node-name",
        metavar="NAME",
        help="this node (default $NODE_NAME; with --pods, else the host name)",
    )
    p.add_argument("--tick", metavar="SECONDS", type=float, help="seconds between ticks (1)")
    p.add_argument("--once", action="store_true", help="run one tick and exit")
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan and writes; write nothing"
    )
    p.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve Prometheus metrics here")
    p.add_argument(
        "--state-dir", metavar="DIR", help="status file and journal (default /var/lib/colocd)"
    )
    p.add_argument(
        "--revert-on-exit",
        action="store_true",
        default=None,
        help="write every original cgroup value back when stopping",
    )
    p.add_argument(
        "--no-fast-path",
        dest="fast_path",
        action="store_false",
        default=None,
        help="tick only (no surge watcher between ticks)",
    )
    p.add_argument("--node-cpu", metavar="QUANTITY", help="node CPU capacity, e.g. 8 or 7500m")
    p.add_argument("--node-memory", metavar="QUANTITY", help="node memory capacity, e.g. 16Gi")
    p.set_defaults(func=run)


def _quantity(flag: str, text: str | None, resource: str, scale: int) -> int | None:
    if text is None:
        return None
    try:
        value = parse_quantity(text, resource) * scale
    except ValueError as err:
        raise ConfigError(f"read {flag}: {err}") from None
    if value <= 0:
        raise ConfigError(f"read {flag}: {text!r} must be positive")
    return int(value)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags, nested like the config file (unset flags are None and dropped)."""
    return {
        "isolation": {
            "cgroup_root": args.cgroup_root,
            "kubelet_cgroup_root": args.kubelet_cgroup_root,
            "revert_on_exit": args.revert_on_exit,
        },
        "agent": {
            "node_name": args.node_name,
            "tick_s": args.tick,
            "metrics_addr": args.metrics_addr,
            "pods_dir": args.pods,
            "kubeconfig": args.kubeconfig,
            "state_dir": args.state_dir,
            "dry_run": args.dry_run or None,
            "fast_path": {"enabled": args.fast_path},
            "cpu_milli": _quantity("--node-cpu", args.node_cpu, CPU, 1000),
            "memory_bytes": _quantity("--node-memory", args.node_memory, MEMORY, 1),
        },
    }


def _shown(value: Any) -> str:
    if isinstance(value, frozenset):
        return format_cpuset(value) or "(empty)"
    if isinstance(value, CpuMax):
        return "max" if value.quota_us is None else f"{value.quota_us}/{value.period_us}"
    if isinstance(value, bool):
        return "1" if value else "0"
    return "max" if value is None else str(value)


def _now(cgroups: Cgroups, w: Write) -> str:
    try:
        return _shown(cgroups.read(w.knob, w.cgroup).value)
    except UnsupportedKnobError:
        return "(unsupported)"
    except CgroupGoneError:
        return "(gone)"
    except (WriteError, IsolationError) as err:
        return f"({err})"


def print_dry_run(cgroups: Cgroups, result: TickResult) -> None:
    plan = result.plan
    out = sys.stdout
    out.write(f"plan (dry run, nothing is written): node {plan.budgets.cpu.capacity}m CPU\n")
    for b in plan.budgets.all():
        out.write(f"  {b.reason}\n")
    out.write(f"  margin {plan.margin.millicores}m: {plan.margin.reason}\n")
    tier = plan.batch_tier
    for item in (tier.cpu_idle, tier.cpu_cap, tier.memory):
        if item is not None:
            out.write(f"  batch tier: {item.reason}\n")
    if plan.io is not None:
        out.write(f"  io: {plan.io.reason}\n")
    for line in [*result.notes, *(d.text for d in result.degraded)]:
        out.write(f"  note: {line}\n")
    for e in plan.evictions:
        out.write(f"  eviction: {e.reason}\n")
    if plan.gpu is not None:
        for d in plan.gpu.devices:
            out.write(f"  gpu: {d.reason}\n")
        for f in plan.gpu.freezes:
            out.write(f"  gpu: {f.reason}\n")
    rows = [
        {
            "knob": w.knob,
            "cgroup": "/" + w.cgroup,
            "now": _now(cgroups, w),
            "want": _shown(w.value),
        }
        for w in result.writes
    ]
    out.write(f"writes ({len(rows)}):\n")
    out.write(render_table(rows, WRITE_COLUMNS) + "\n")
    out.flush()


# Every signal whose default would kill the agent with its values left applied.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """These signals stop the loop (after its current step) instead of killing it."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args.config, overrides(args))
    agent = settings.agent
    if agent.pods_dir is not None and not agent.pods_dir.is_dir():
        raise ConfigError(f"read pods {agent.pods_dir}: not a directory")
    if agent.pods_dir is not None and (problem := DirPodSource(agent.pods_dir).check()):
        raise ConfigError(problem)  # e.g. `--pods /`: far too big a tree to be a pod dir
    iso = settings.isolation
    journal_file = iso.state_dir / JOURNAL_FILE
    try:
        check_file(journal_file, JOURNAL_MAX_BYTES)
    except InputError as err:
        raise ConfigError(f"read journal {journal_file}: {err.reason}") from err
    try:
        hierarchy = detect_hierarchy(iso.cgroup_root, str(iso.proc_root), AGENT_CONTROLLERS)
        layout = detect_layout(hierarchy, iso.kubelet_cgroup_root)
        cgroups = Cgroups(hierarchy)
    except IsolationError as err:
        raise ConfigError(str(err)) from err
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    with contextlib.ExitStack() as stack:
        executor = None
        if not agent.dry_run:
            kubepods = hierarchy.reference() / layout.kubepods()
            lock = NodeLock(iso.state_dir, kubepods, str(iso.proc_root))
            try:
                lock.acquire()
                stack.callback(lock.release)
                executor = Executor.from_settings(cgroups, iso)
            except IsolationError as err:
                raise ConfigError(str(err)) from err
        if agent.metrics_addr is not None:
            host, port = config.parse_address(agent.metrics_addr)
            try:
                stack.callback(serve(registry, host, port).shutdown)
            except OSError as err:
                raise ConfigError(f"serve metrics on {agent.metrics_addr}: {err.strerror}") from err

        def capacity(allocatable: NodeCapacity | None = None) -> NodeCapacity:
            return node_capacity(
                cgroups,
                layout,
                allocatable=allocatable,
                cpu_milli=agent.cpu_milli,
                memory_bytes=agent.memory_bytes,
            )

        seams: dict[str, Any] = {}
        if agent.pods_dir is not None:
            source: PodSource = DirPodSource(agent.pods_dir)
            # No Eviction API on a bare host: evictions signal the pod's cgroup.
            evictor = CgroupEvictor(cgroups, layout, metrics.kube, grace_s=agent.kill_grace_s)
            stack.callback(evictor.close)
            seams = {"evict": evictor.evict}
        else:
            client = KubeClient.connect(None if agent.kubeconfig is None else str(agent.kubeconfig))
            stack.callback(client.close)
            cluster = Cluster(client, agent.node_name, metrics.kube)
            cluster.start()
            stack.callback(cluster.stop)
            source = cluster
            seams = {
                "publish": cluster.publish,
                "evict": cluster.evict,
                "qos": cluster.qos_settings,
                "node_capacity": lambda: capacity(cluster.allocatable()),
                "network": cluster.network_settings,
                "event": cluster.pod_event,
            }
            if settings.qos != QosSettings():
                log.warning(
                    "the qos section of the settings applies with --pods only; on "
                    "Kubernetes the ColocationPolicies in force set the brain's settings"
                )
        network = None
        try:
            net = to_network_settings(layered(settings.network))
        except ValueError as err:
            raise ConfigError(f"read network settings: {err}") from None
        net_source = seams.pop("network", None)
        if net.enabled or net_source is not None:
            try:
                network = NetworkSide(
                    net, iso.state_dir, dry_run=agent.dry_run, clock=time.monotonic,
                    metrics=metrics, source=net_source,
                )  # fmt: skip
            except IsolationError as err:
                raise ConfigError(str(err)) from err
        elif not agent.dry_run:
            # Shaping is off now; what an earlier run left (a crash) goes all the same.
            try:
                for line in revert_network(iso.state_dir):
                    log.warning("network: removed what an earlier run left: %s", line)
            except IsolationError as err:
                raise ConfigError(str(err)) from err
        loop = Loop(
            settings,
            source=source,
            cgroups=cgroups,
            layout=layout,
            capacity=capacity(),
            executor=executor,
            metrics=metrics,
            on_tick=(lambda r: print_dry_run(cgroups, r)) if agent.dry_run else None,
            notifier=SdNotifier(agent.notify_socket) if agent.notify_socket else None,
            network=network,
            gpus=GpuSource.open(cgroups),  # None without NVML or GPUs: GPU absent
            **seams,
        )
        stop = threading.Event()
        try:
            with _signals(stop):
                result = loop.run(stop, once=args.once)
        finally:
            reverted = loop.close()
    if loop.fatal is not None:
        print(f"colocd: error: {loop.fatal}", file=sys.stderr)
        return 1
    if reverted is not None and reverted.failed:
        for r in reverted.failed:
            print(f"colocd: error: revert: {r.reason}", file=sys.stderr)
        return 1
    if args.once and result is None:
        print("colocd: error: run one tick: it did not complete (see the log)", file=sys.stderr)
        return 1
    return 0
