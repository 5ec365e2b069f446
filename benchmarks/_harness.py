"""What every benchmark shares: pods, running workloads in the tree, results, the entry point."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from agent.errors import AgentError
from agent.report.output import emit
from agent.sources.pod_manifest import parse_pod
from benchmarks._tree import BenchTree, CgroupDir
from benchmarks.errors import BenchError
from lab.demo.agent_child import AgentProcess
from lab.workloads import LatencySummary, WorkloadProcess, median, stop_all
from qos.k8s_qos import QOSClass, pod_qos_class
from qos.pod import Pod

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1 << 20
_UIDS = uuid.UUID("7c0c0d00-0000-4000-8000-000000000000")  # pod UIDs: uuid5 of the name


def pod(name: str, containers: dict[str, dict[str, dict[str, str]]]) -> Pod:
    """A Pod from a manifest, defaulted as the API server would; `containers` maps name →
    resources (`{"requests": {...}, "limits": {...}}`, empty for BestEffort)."""
    return parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid5(_UIDS, name))},
            "spec": {
                "containers": [
                    {"name": c, "image": "colocd/workload", "resources": resources}
                    for c, resources in containers.items()
                ]
            },
        }
    )


class WorkloadSpec(NamedTuple):
    """A workload to run as `pod`/`container`: `python -m lab.workloads.<module> <args>`."""

    name: str
    module: str
    args: tuple[str, ...]
    pod: str
    container: str
    samples: bool = False


class Enforcement(NamedTuple):
    """What a setup wrote (or found written, for colocd) and why, for the JSON."""

    writes: dict[str, int | str]
    reason: str


# What colocd may write on the besteffort level on cgroup v1, read back after a window.
BESTEFFORT_FILES = (
    "cpu.idle",
    "cpu.shares",
    "cpu.cfs_quota_us",
    "cpuset.cpus",
    "memory.limit_in_bytes",
)


@contextmanager
def colocd_agent(
    tree: BenchTree,
    workdir: Path,
    node_cpu_milli: int,
    node_memory_bytes: int,
    settings: dict[str, Any] | None = None,
) -> Iterator[AgentProcess]:
    """The real agent (`colocd run` in a child process) over the tree's pods, with the
    brain's default settings unless `settings` says otherwise; stopped (and its writes
    reverted) on the way out. The node is the tree's root cgroup."""
    agent = AgentProcess(
        tree.kubelet_tree,
        workdir / "agent",
        cpu_milli=node_cpu_milli,
        memory_bytes=node_memory_bytes,
        settings=settings,
    )
    for p in tree.kubelet_tree.pods.values():
        agent.publish(p)
    try:
        agent.start()
        yield agent
    finally:
        code = agent.stop()
        if code not in (0, None):
            print(f"  note: the agent exited with status {code}: {agent.log_tail()}")


def colocd_enforcement(tree: BenchTree, agent: AgentProcess) -> Enforcement:
    """What the agent has written on the besteffort level, and its reasons (its status)."""
    status = agent.status()
    if status is None:
        raise BenchError(f"read colocd status: none written: {agent.log_tail()}")
    besteffort = tree.qos(QOSClass.BEST_EFFORT)
    writes: dict[str, int | str] = {}
    for name in BESTEFFORT_FILES:
        value = besteffort.read(name)
        writes[f"besteffort/{name}"] = int(value) if value.lstrip("-").isdigit() else value
    # cpu.idle goes on each batch pod (kubelet rewrites the QoS levels' weights).
    for pod in tree.kubelet_tree.pods.values():
        if pod_qos_class(pod) is QOSClass.BEST_EFFORT:
            writes[f"pod:{pod.name}/cpu.idle"] = int(tree.pod(pod.name).read("cpu.idle"))
    budgets = [f"{b.name} {b.amount}{b.unit}" for b in status.budgets]
    reason = "; ".join([*budgets, *status.batch_tier])
    return Enforcement(writes, f"colocd after {status.ticks} ticks: {reason}")


@contextmanager
def workloads_in(
    tree: BenchTree, workdir: Path, specs: Sequence[WorkloadSpec]
) -> Iterator[dict[str, WorkloadProcess]]:
    """Spawn each workload behind its gate and place it in its container's cgroups.

    Gates stay closed (the caller opens them, in the order it needs); every workload is
    stopped and reaped on the way out, whatever happened.
    """
    procs: dict[str, WorkloadProcess] = {}
    try:
        for spec in specs:
            proc = WorkloadProcess.spawn(
                spec.name, spec.module, spec.args, workdir, samples=spec.samples
            )
            procs[spec.name] = proc
            tree.place(spec.pod, spec.container, proc.pid)
        yield procs
    finally:
        stop_all(list(procs.values()))


def cpu_seconds(level: CgroupDir) -> float:
    """CPU time used by everything in the level, from cpuacct.usage (ns)."""
    return int(level.read("cpuacct.usage")) / 1e9


def capacity_cores() -> float:
    """The CPUs this process may run on: the node's CPU capacity for the benchmarks."""
    return float(len(os.sched_getaffinity(0)))


def measure_cores(level: CgroupDir, seconds: float, watch: Sequence[WorkloadProcess]) -> float:
    """The level's CPU use, in cores, over the next `seconds` (following the reports)."""
    start, used = time.monotonic(), cpu_seconds(level)
    sleep_until(start + seconds, watch)
    return (cpu_seconds(level) - used) / (time.monotonic() - start)


def sleep_until(deadline: float, watch: Sequence[WorkloadProcess] = ()) -> None:
    """Sleep until the monotonic deadline, following the watched workloads' reports."""
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))
        for proc in watch:
            proc.poll()


def host_facts() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def write_results(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    stamped = {"benchmark": name, "finished_at": datetime.now(UTC).isoformat(), **payload}
    tmp.write_text(json.dumps(stamped, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def print_table(title: str, rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]]):
    print(f"\n{title}")
    emit(rows, "table", columns)


def median_latency(summaries: Sequence[LatencySummary], name: str) -> dict[str, float | None]:
    """`<name>_p50_us`, `_p99_us`, `_p999_us`: each the median over repeats."""
    return {
        f"{name}_p50_us": median([s.p50 for s in summaries]),
        f"{name}_p99_us": median([s.p99 for s in summaries]),
        f"{name}_p999_us": median([s.p999 for s in summaries]),
    }


def fmt_ms(us: float | None) -> str | None:
    return None if us is None else f"{us / 1000:.3f}"


def fmt_ratio(value: float | None, base: float | None) -> str | None:
    if value is None or not base:
        return None
    return f"{value / base:.2f}x"


def base_parser(description: str, duration: float, repeats: int) -> argparse.ArgumentParser:
    """The flags every benchmark has, with its own defaults for the two that set its length."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--duration", type=float, default=duration, help=f"measured s per setup ({duration:g})"
    )
    parser.add_argument(
        "--repeats", type=int, default=repeats, help=f"rounds of all setups ({repeats})"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    return parser


def bench_main(
    name: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace, Path], dict]
) -> int:
    """Parse flags, run in a scratch directory, write the JSON; one-line errors, exit 1."""
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(f"{name}: run benchmark: needs root (real cgroups)", file=sys.stderr)
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix=f"colocd-{name}-") as scratch:
            payload = run(args, Path(scratch))
    except (BenchError, AgentError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; everything it created was removed", file=sys.stderr)
        return 130
    path = write_results(name, payload, args.results_dir)
    print(f"\nresults: {path}")
    return 0
