"""Overhead: the agent's own CPU (millicores) and memory (RSS) at 1-s ticks on a big node.

A kubelet-like tree on real cgroups (`benchmarks._tree`, v1 here) holds `--pods` pods of
three containers each (250 pods / 750 containers by default): two fifths Guaranteed and two
fifths Burstable (online), one fifth BestEffort (batch). Most containers hold no process:
the agent's cost is in reading and writing cgroups (each tier's use from the QoS levels,
each online pod's stall, each pod's settings), whatever runs inside; `--busy` containers
get a light process each (a loop that sleeps 9 ms in 10), so usage counters move. The real
agent then runs over it as on a node: `colocd run --pods DIR` in a child process with its
default settings (1-s ticks summing each tier from a few QoS-level counters; the fast path
reading the online tier's use from such counters every 50 ms, and each online pod's stall
every 250 ms where no PSI trigger is armed), the tree's root as the node.

After `--warmup` seconds (start-up, first ticks, descriptors opened) its CPU time (user +
system, all threads, from psutil) is measured over `--duration` seconds and given in
millicores; its RSS is sampled every second (the largest and the last are reported, with
USS). The agent's own tick times come from its status and log.

Targets: <= 50 millicores and <= 100 MiB RSS. Koordinator's koordlet: 0.5 core and 341 MiB
for 150 containers (its chart limits it to 200m/256Mi "for < 200 pods").
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks._harness import (
    MIB,
    RESULTS_DIR,
    bench_main,
    capacity_cores,
    colocd_agent,
    host_facts,
    pod,
    print_table,
)
from benchmarks._tree import build_tree
from benchmarks.errors import BenchError
from qos.pod import Pod
from qos.settings import CpuMechanism

NAME = "overhead"
TARGET_MILLICORES = 50.0
TARGET_RSS_MIB = 100.0
CONTAINERS = ("app", "sidecar", "log")
NODE_MEMORY_BYTES = 64 * 1024 * MIB
AGENT_START_TIMEOUT_S = 60.0
SAMPLE_EVERY_S = 1.0
TICK_MS = re.compile(r"tick (\d+): .*; ([0-9.]+) ms")
LIGHT_LOOP = "import time\nwhile True:\n    t = time.perf_counter() + 0.001\n" + (
    "    while time.perf_counter() < t: pass\n    time.sleep(0.009)\n"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=250, help="pods (3 containers each)")
    parser.add_argument("--busy", type=int, default=4, help="containers with a light process")
    parser.add_argument("--warmup", type=float, default=10.0, help="s before measuring (10)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (60)")
    parser.add_argument(
        "--mechanism",
        choices=[m.value for m in CpuMechanism],
        default=None,
        help="the brain's CPU mechanism (default: its default; cpuset or quota keep the fast"
        " path reading online use every 50 ms)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    return parser


def node_pods(count: int) -> list[Pod]:
    """Two fifths Guaranteed, two fifths Burstable, one fifth BestEffort, 3 containers each."""
    pods = []
    for i in range(count):
        kind = ("guaranteed", "burstable", "guaranteed", "burstable", "besteffort")[i % 5]
        if kind == "guaranteed":
            res = {"requests": {"cpu": "20m", "memory": "32Mi"}}
            res["limits"] = dict(res["requests"])
        elif kind == "burstable":
            res = {"requests": {"cpu": "10m", "memory": "16Mi"}}
        else:
            res = {}
        pods.append(pod(f"{kind}-{i:03d}", {c: res for c in CONTAINERS}))
    return pods


def _tick_ms(log: Path) -> list[float]:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [float(m.group(2)) for m in TICK_MS.finditer(text)]


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    pods = node_pods(args.pods)
    cpu_milli = round(capacity_cores() * 1000)
    print(
        f"overhead: {len(pods)} pods / {len(pods) * len(CONTAINERS)} containers,"
        f" {args.busy} with a light process; {args.warmup:g} s warm-up + {args.duration:g} s",
        flush=True,
    )
    built = time.monotonic()
    light: list[subprocess.Popen[bytes]] = []
    with build_tree(pods, cpu_milli, NODE_MEMORY_BYTES) as tree:
        build_s = time.monotonic() - built
        try:
            # Not in Guaranteed pods: kubelet's -997 oom_score_adj needs CAP_SYS_RESOURCE.
            hosts = [p for p in pods if not p.name.startswith("guaranteed")]
            for p in hosts[: args.busy]:
                light.append(subprocess.Popen([sys.executable, "-c", LIGHT_LOOP]))
                tree.place(p.name, CONTAINERS[0], light[-1].pid)
            settings = {"qos": {"cpu": {"mechanism": args.mechanism}}} if args.mechanism else None
            with colocd_agent(tree, scratch, cpu_milli, NODE_MEMORY_BYTES, settings) as agent:
                first = agent.wait_ticks(1, AGENT_START_TIMEOUT_S)
                assert first is not None and agent.pid is not None
                proc = psutil.Process(agent.pid)
                time.sleep(args.warmup)
                if not agent.alive():
                    raise BenchError(f"run colocd: it exited: {agent.log_tail()}")
                cpu0, t0, ticks0 = proc.cpu_times(), time.monotonic(), agent.status()
                rss, uss = [], []
                while time.monotonic() < t0 + args.duration:
                    time.sleep(SAMPLE_EVERY_S)
                    info = proc.memory_full_info()
                    rss.append(info.rss)
                    uss.append(info.uss)
                cpu1, t1, ticks1 = proc.cpu_times(), time.monotonic(), agent.status()
                threads = proc.num_threads()
                fds = proc.num_fds()
                tick_ms = _tick_ms(agent.log_path)
        finally:
            for p in light:
                p.kill()
                p.wait()
    wall = t1 - t0
    user, system = cpu1.user - cpu0.user, cpu1.system - cpu0.system
    millicores = (user + system) / wall * 1000
    ticks = None if ticks0 is None or ticks1 is None else ticks1.ticks - ticks0.ticks
    result = {
        "pods": len(pods),
        "containers": len(pods) * len(CONTAINERS),
        "busy_containers": args.busy,
        "tree_build_s": round(build_s, 2),
        "measured_s": round(wall, 1),
        "ticks": ticks,
        "millicores": round(millicores, 1),
        "user_millicores": round(user / wall * 1000, 1),
        "system_millicores": round(system / wall * 1000, 1),
        "rss_max_mib": round(max(rss) / MIB, 1),
        "rss_last_mib": round(rss[-1] / MIB, 1),
        "uss_max_mib": round(max(uss) / MIB, 1),
        "threads": threads,
        "open_fds": fds,
        "tick_ms_median": round(statistics.median(tick_ms), 1) if tick_ms else None,
        "tick_ms_max": max(tick_ms) if tick_ms else None,
        "mechanism": args.mechanism or CpuMechanism.AUTO.value,
        "batch_tier": None if ticks1 is None else ticks1.batch_tier,
        "fast_path": None if ticks1 is None else ticks1.fast_path.detail,
    }
    checks = {
        "millicores": {"value": result["millicores"], "target": TARGET_MILLICORES},
        "rss_mib": {"value": result["rss_max_mib"], "target": TARGET_RSS_MIB},
    }
    for c in checks.values():
        c["met"] = c["value"] <= c["target"]
    rows = [
        {"figure": "CPU (millicores)", "value": result["millicores"], "target": "<= 50"},
        {"figure": "  of which user", "value": result["user_millicores"], "target": ""},
        {"figure": "  of which system", "value": result["system_millicores"], "target": ""},
        {"figure": "RSS max (MiB)", "value": result["rss_max_mib"], "target": "<= 100"},
        {"figure": "USS max (MiB)", "value": result["uss_max_mib"], "target": ""},
        {"figure": "tick median (ms)", "value": result["tick_ms_median"], "target": ""},
        {"figure": "ticks measured", "value": ticks, "target": ""},
    ]
    print_table(
        f"colocd run over {result['pods']} pods / {result['containers']} containers, 1-s ticks,"
        f" {wall:.0f} s",
        rows,
        [("FIGURE", "figure"), ("VALUE", "value"), ("TARGET", "target")],
    )
    for name, c in checks.items():
        print(
            f"  {name}: {c['value']} (target <= {c['target']}): {'MET' if c['met'] else 'MISSED'}"
        )
    print("  koordlet, for comparison: 500 millicores and 341 MiB for 150 containers")
    return {
        "config": {**vars(args), "results_dir": str(args.results_dir)},
        "host": host_facts(),
        "result": result,
        "targets": {**checks, "all_met": all(c["met"] for c in checks.values())},
    }


def main() -> int:
    return bench_main(NAME, build_parser(), run)


if __name__ == "__main__":
    sys.exit(main())
