"""Footprint: what the agent's own work adds to online wake-up lateness, at 2 and 250 pods.

The figure is the one a node's online work feels: how late an online process wakes up.
The probe (`lab.workloads.wake_probe`) sleeps `--sleep-us` (1 ms) over and over and records
how late each wake-up comes, about a thousand a second, in an online pod (Burstable). Next
to it a BestEffort batch pod runs `--hogs` CPU hogs under `cpu.idle=1` on its own cgroup,
as colocd leaves batch (besteffort keeps kubelet's weight), and idle Burstable pods fill
the node up to the pod count (the agent's cost grows with the pods it reads).

Two setups on that same node, written statically by the benchmark: **none** (no agent)
and **agent**: the real agent, `colocd run --dry-run` (1-s ticks), which reads every pod's
cgroups, decides and reports, but writes nothing, so only its own CPU and cache footprint
differ. The agent runs where the unit puts it: its own cpu cgroup in the system tier,
beside kubepods (`system.slice/colocd.service`, default weight).

Per pod count one tree, one probe and one set of hogs serve every window; windows of
`--duration` seconds alternate agent, none, none, agent, agent, none, ... for `--repeats`
rounds (each round runs both, the order flipping from round to round), so drift on the
machine hits both setups alike. Before each window `--warmup` seconds pass (after the
agent's `--agent-ticks` first ticks, or after it stopped). Reported per setup: p99 and
p99.9 over all its windows' wake-ups together, the range of the per-window figures across
repeats, and the % the agent adds; with the agent's CPU and tick times, the load average
and the CPU other work on the machine took during each window (outside the tree). This
prints figures; it judges nothing (a noisy machine moves them: compare the spread, and
measure on a quiet machine, e.g. `--repeats 10 --duration 30`).

Target (issue 10): the agent adds at most 5 % to online's p99 wake-up lateness.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks._harness import (
    MIB,
    WorkloadSpec,
    base_parser,
    bench_main,
    capacity_cores,
    host_facts,
    pod,
    print_table,
    sleep_until,
    workloads_in,
)
from benchmarks._tree import BenchTree, build_tree, remove_cgroup
from benchmarks.errors import BenchError
from isolation.readings import CONTAINER_TICK
from lab.demo.agent_child import AgentProcess
from lab.workloads import LatencySummary, RequestSample, WorkloadProcess, median
from lab.workloads.spin import iterations_per_ms
from qos.k8s_qos import QOSClass
from qos.pod import Pod

NAME = "footprint"
AGENT, NONE = "agent", "none"
SETUPS = (AGENT, NONE)
TARGET_ADDED_P99 = 0.05
NODE_MEMORY_BYTES = 8192 * MIB
START_TIMEOUT_S = 30.0
AGENT_START_TIMEOUT_S = 60.0
KUBELET_BESTEFFORT_SHARES = 2
TICK_LINE = re.compile(rb"tick \d+:")
TICK_MS = re.compile(rb"tick \d+: .*; ([0-9.]+) ms")
AGENT_CGROUP = ("system.slice", "colocd.service")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n")[0], duration=10.0, repeats=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="s before each window (2)")
    parser.add_argument(
        "--pods", default="2,250", help="pod counts to measure at, comma-separated (2,250)"
    )
    parser.add_argument("--sleep-us", type=float, default=1000.0, help="probe's sleep (1000)")
    parser.add_argument(
        "--work-us", type=float, default=0.0, help="probe's CPU after each wake-up (0)"
    )
    parser.add_argument("--hogs", type=int, default=2, help="CPU hogs in the batch pod (2)")
    parser.add_argument(
        "--agent-ticks", type=int, default=3, help="agent ticks before its window opens (3)"
    )
    return parser


@dataclass(frozen=True)
class Window:
    setup: str
    pods: int
    repeat: int
    t0: float
    t1: float
    agent_millicores: float | None
    agent_tick_ms: float | None  # the agent's own median tick time in its window
    loadavg: tuple[float, float, float]  # at the window's end
    outside_cores: float | None  # CPU taken outside this tree meanwhile (other work here)


@dataclass(frozen=True)
class Measured:
    window: Window
    lateness: list[float]  # every wake-up's lateness in the window, µs

    @property
    def summary(self) -> LatencySummary:
        return LatencySummary.of(self.lateness)


def node_pods(count: int, hogs: int) -> list[Pod]:
    pods = [pod("online", {"probe": {"requests": {"cpu": "100m"}}})]
    pods.append(pod("batch", {f"hog-{i}": {} for i in range(hogs)}))
    idle = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    pods += [pod(f"idle-{i}", {"app": idle}) for i in range(max(0, count - len(pods)))]
    return pods


def order(repeat: int) -> tuple[str, str]:
    """Both setups each round; the first of a round flips, so neither always goes first."""
    return SETUPS if repeat % 2 == 0 else SETUPS[::-1]


@contextlib.contextmanager
def agent_home(tree: BenchTree) -> Iterator[Path]:
    """The agent's own cpu cgroup beside kubepods (system tier), removed afterwards."""
    mount = tree.kubelet_tree.mounts["cpu"]
    made: list[Path] = []
    path = mount / tree.top
    try:
        for part in AGENT_CGROUP:
            path = path / part
            path.mkdir()
            made.append(path)
        yield path / "cgroup.procs"
    finally:
        for p in reversed(made):
            remove_cgroup(p)


def wait_log_ticks(agent: AgentProcess, ticks: int, timeout: float) -> None:
    """A dry-run agent writes no status: count its tick lines instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(TICK_LINE.findall(_log(agent))) >= ticks:
            return
        if not agent.alive():
            raise BenchError(f"run colocd --dry-run: it exited: {agent.log_tail()}")
        time.sleep(0.1)
    raise BenchError(f"run colocd --dry-run: no tick {ticks} in {timeout:g} s: {agent.log_tail()}")


def _log(agent: AgentProcess) -> bytes:
    try:
        return agent.log_path.read_bytes()
    except OSError:
        return b""


def cpu_time(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def dry_run_agent(tree: BenchTree, workdir: Path, capacity_milli: int) -> Iterator[AgentProcess]:
    """`colocd run --dry-run` over the tree, in its own system-tier cgroup; stopped after."""
    with agent_home(tree) as home:
        agent = AgentProcess(
            tree.kubelet_tree,
            workdir,
            cpu_milli=capacity_milli,
            memory_bytes=NODE_MEMORY_BYTES,
            cgroup_procs=home,
            extra_args=("--dry-run",),
        )
        for p in tree.kubelet_tree.pods.values():
            agent.publish(p)
        agent.start()
        try:
            yield agent
        finally:
            agent.stop()


@dataclass(frozen=True)
class Node:
    """One pod count's node: its tree, its running workloads, what the agent needs."""

    tree: BenchTree
    procs: dict[str, WorkloadProcess]
    count: int
    capacity_milli: int
    scratch: Path

    @property
    def watch(self) -> list[WorkloadProcess]:
        return list(self.procs.values())


def _usage_ns(node: Node) -> tuple[int, int] | None:
    """CPU time used so far by the whole machine and by this tree (the agent included)."""
    cgroups = node.tree.kubelet_tree.cgroups
    host, tree = cgroups.sample("", CONTAINER_TICK), cgroups.sample(node.tree.top, CONTAINER_TICK)
    if host is None or tree is None or host.cpu.usage_ns is None or tree.cpu.usage_ns is None:
        return None
    return host.cpu.usage_ns, tree.cpu.usage_ns


def _outside(before: tuple[int, int] | None, node: Node, seconds: float) -> float | None:
    after = _usage_ns(node)
    if before is None or after is None:
        return None
    return ((after[0] - before[0]) - (after[1] - before[1])) / 1e9 / seconds


def agent_window(node: Node, repeat: int, args: argparse.Namespace) -> Window:
    workdir = node.scratch / f"agent-{node.count}-{repeat}"
    workdir.mkdir()
    with dry_run_agent(node.tree, workdir, node.capacity_milli) as agent:
        wait_log_ticks(agent, args.agent_ticks, AGENT_START_TIMEOUT_S)
        sleep_until(time.monotonic() + args.warmup, node.watch)
        assert agent.pid is not None
        ticks0 = len(TICK_MS.findall(_log(agent)))
        cpu0, used0, t0 = cpu_time(agent.pid), _usage_ns(node), time.monotonic()
        sleep_until(t0 + args.duration, node.watch)
        t1 = time.monotonic()
        millicores = (cpu_time(agent.pid) - cpu0) / (t1 - t0) * 1000
        outside = _outside(used0, node, t1 - t0)
        if not agent.alive():
            raise BenchError(f"run colocd --dry-run: it exited: {agent.log_tail()}")
        ticks = [float(ms) for ms in TICK_MS.findall(_log(agent))[ticks0:]]
    return Window(
        AGENT, node.count, repeat, t0, t1, millicores, median(ticks), os.getloadavg(), outside
    )


def none_window(node: Node, repeat: int, args: argparse.Namespace) -> Window:
    sleep_until(time.monotonic() + args.warmup, node.watch)
    used0, t0 = _usage_ns(node), time.monotonic()
    sleep_until(t0 + args.duration, node.watch)
    t1 = time.monotonic()
    outside = _outside(used0, node, t1 - t0)
    return Window(NONE, node.count, repeat, t0, t1, None, None, os.getloadavg(), outside)


@contextlib.contextmanager
def running_node(count: int, args: argparse.Namespace, scratch: Path) -> Iterator[Node]:
    """The tree with the probe and the hogs running, batch under cpu.idle (static)."""
    capacity_milli = round(capacity_cores() * 1000)
    probe_args = [f"--sleep-us={args.sleep_us}", f"--work-us={args.work_us}"]
    if args.work_us > 0:
        probe_args.append(f"--iterations-per-ms={iterations_per_ms()}")
    specs = [WorkloadSpec("probe", "wake_probe", tuple(probe_args), "online", "probe", True)]
    specs += [
        WorkloadSpec(f"hog-{i}", "cpu_hog", (), "batch", f"hog-{i}") for i in range(args.hogs)
    ]
    workdir = scratch / f"node-{count}"
    workdir.mkdir()
    with contextlib.ExitStack() as stack:  # closed in reverse: workloads, then the tree
        tree = stack.enter_context(
            build_tree(node_pods(count, args.hogs), capacity_milli, NODE_MEMORY_BYTES)
        )
        besteffort = tree.qos(QOSClass.BEST_EFFORT)
        # kubelet's shares=2 would starve the hogs' start-up on a busy shared machine;
        # besteffort gets kubelet's weight back once they run.
        besteffort.write("cpu.shares", 1024)
        procs = stack.enter_context(workloads_in(tree, workdir, specs))
        for proc in procs.values():
            proc.open_gate()
        for proc in procs.values():
            proc.wait_started(START_TIMEOUT_S)
        besteffort.write("cpu.shares", KUBELET_BESTEFFORT_SHARES)
        # As colocd leaves batch: cpu.idle on the batch pod's own cgroup.
        tree.pod("batch").write("cpu.idle", 1)
        yield Node(tree, procs, count, capacity_milli, scratch)


def measure(count: int, args: argparse.Namespace, scratch: Path) -> list[Measured]:
    with running_node(count, args, scratch) as node:
        windows: list[Window] = []
        for repeat in range(args.repeats):
            for setup in order(repeat):
                run_window = agent_window if setup == AGENT else none_window
                window = run_window(node, repeat, args)
                windows.append(window)
                ms = window.agent_tick_ms
                tick = "" if ms is None else f", tick {ms:.1f} ms"
                agent = (
                    ""
                    if window.agent_millicores is None
                    else f", agent {window.agent_millicores:.1f} millicores{tick}"
                )
                outside = window.outside_cores
                busy = "" if outside is None else f", {outside:.2f} cores used outside the tree"
                print(
                    f"  {count:4d} pods, round {repeat + 1}, {setup:5}: window done "
                    f"(load {window.loadavg[0]:.2f}{busy}{agent})",
                    flush=True,
                )
        probe = node.procs["probe"]
        probe.stop()
        samples = probe.samples()
    if not samples:
        raise BenchError(f"read the probe's samples at {count} pods: none written")
    return [Measured(w, _lateness(samples, w)) for w in windows]


def _lateness(samples: Sequence[RequestSample], w: Window) -> list[float]:
    return [s.lateness_us for s in samples if w.t0 <= s.arrival_t <= w.t1]


def _spread(values: Sequence[float | None]) -> list[float] | None:
    present = [v for v in values if v is not None]
    return [min(present), max(present)] if present else None


def _added(agent: float | None, none: float | None) -> float | None:
    return None if agent is None or not none else agent / none - 1


def summarise(measured: list[Measured], counts: list[int]) -> dict[str, dict[str, Any]]:
    """Per pod count: each setup's pooled p99/p99.9, the per-window range, the % added."""
    summary: dict[str, dict[str, Any]] = {}
    windows = [(m, m.summary) for m in measured]
    for count in counts:
        row: dict[str, Any] = {}
        for setup in SETUPS:
            mine = [(m, s) for m, s in windows if (m.window.pods, m.window.setup) == (count, setup)]
            pooled = LatencySummary.of([x for m, _ in mine for x in m.lateness])
            row[setup] = {
                "windows": len(mine),
                "wakeups": pooled.count,
                "p50_us": pooled.p50,
                "p99_us": pooled.p99,
                "p999_us": pooled.p999,
                "p99_us_range": _spread([s.p99 for _, s in mine]),
                "p999_us_range": _spread([s.p999 for _, s in mine]),
                "agent_millicores": median([m.window.agent_millicores for m, _ in mine]),
                "agent_tick_ms": median([m.window.agent_tick_ms for m, _ in mine]),
                "loadavg_1m_range": _spread([m.window.loadavg[0] for m, _ in mine]),
                "outside_cores_range": _spread([m.window.outside_cores for m, _ in mine]),
            }
        agent, none = row[AGENT], row[NONE]
        row["added_p99"] = _added(agent["p99_us"], none["p99_us"])
        row["added_p999"] = _added(agent["p999_us"], none["p999_us"])
        # Round by round (agent's window against the none window of the same round).
        rounds = sorted({m.window.repeat for m, _ in windows if m.window.pods == count})
        per_round = []
        for r in rounds:
            pair = {
                m.window.setup: s.p99
                for m, s in windows
                if m.window.pods == count and m.window.repeat == r
            }
            per_round.append(_added(pair.get(AGENT), pair.get(NONE)))
        row["added_p99_per_round"] = per_round
        row["within_target"] = row["added_p99"] is not None and row["added_p99"] <= TARGET_ADDED_P99
        summary[str(count)] = row
    return summary


def report(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    for count, row in summary.items():
        for setup in SETUPS:
            s = row[setup]
            rows.append(
                {
                    "pods": count,
                    "setup": setup,
                    "wakeups": s["wakeups"],
                    "p50": _us(s["p50_us"]),
                    "p99": _us(s["p99_us"]),
                    "p99_windows": _range(s["p99_us_range"]),
                    "p99.9": _us(s["p999_us"]),
                    "p99.9_windows": _range(s["p999_us_range"]),
                    "agent_mcores": _num(s["agent_millicores"]),
                    "tick_ms": _num(s["agent_tick_ms"]),
                    "load_1m": _range(s["loadavg_1m_range"], 2),
                    "outside_cores": _range(s["outside_cores_range"], 2),
                }
            )
    columns = [(c.upper(), c) for c in rows[0]]
    print_table(
        f"online wake-up lateness (µs) over {args.repeats} x {args.duration:g}-s windows per "
        f"setup (sleep {args.sleep_us:g} µs); p99/p99.9 pooled, windows: per-window range",
        rows,
        columns,
    )
    for count, row in summary.items():
        rounds = ", ".join(_pct(a) or "-" for a in row["added_p99_per_round"])
        print(
            f"  {count} pods: the agent adds {_pct(row['added_p99'])} to p99 and "
            f"{_pct(row['added_p999'])} to p99.9 (per round, p99: {rounds}); target <= "
            f"{TARGET_ADDED_P99:.0%}: {'within' if row['within_target'] else 'beyond'}"
        )


def _us(value: float | None) -> str | None:
    return None if value is None else f"{value:.0f}"


def _num(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}"


def _range(span: list[float] | None, digits: int = 0) -> str | None:
    return None if span is None else f"{span[0]:.{digits}f}-{span[1]:.{digits}f}"


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:+.1%}"


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    try:
        counts = [int(c) for c in args.pods.split(",") if c.strip()]
    except ValueError:
        raise BenchError(f"read --pods {args.pods!r}: not comma-separated counts") from None
    if not counts or min(counts) < 2:
        raise BenchError(f"read --pods {args.pods!r}: each count must hold online and batch")
    if args.repeats < 1 or args.duration <= 0:
        raise BenchError("read --repeats/--duration: at least one window of some length")
    print(
        f"footprint: pods {counts} x {args.repeats} rounds x {len(SETUPS)} setups x "
        f"({args.warmup:g} s warm-up + {args.duration:g} s); {capacity_cores():g} cores",
        flush=True,
    )
    facts = host_facts()
    measured: list[Measured] = []
    for count in counts:
        measured += measure(count, args, scratch)
    summary = summarise(measured, counts)
    report(summary, args)
    print(f"note: load average at start {facts['loadavg_at_start']}; at end {os.getloadavg()}")
    return {
        "host": facts,
        "settings": vars(args) | {"results_dir": str(args.results_dir)},
        "target_added_p99": TARGET_ADDED_P99,
        "summary": summary,
        "windows": [asdict(m.window) | {"lateness_us": m.summary._asdict()} for m in measured],
    }


def main() -> int:
    return bench_main(NAME, build_parser(), run)


if __name__ == "__main__":
    raise SystemExit(main())
