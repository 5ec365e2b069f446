"""Memory pressure: a batch memory hog grows next to an online service that lives on its cache.

Inside a node-sized memory cgroup (`kubepods`, default 2 GiB, nested under this process's
own memory cgroup), an online Burstable pod holds anonymous memory and serves random reads
from a file it keeps in the page cache; a BestEffort pod then grows anonymous memory at a
set rate. Setups, each in a fresh tree, interleaved over repeats:

- alone                the online service only;
- kubelet/<N>MiB       kubelet's defaults (kubepods limit, oom_score_adj; nothing else)
                       with batch growing to N MiB;
- colocd/<N>MiB        the real agent (`colocd run` in a child process, the brain's default
                       settings, the tree's root as the node) started once the online
                       service is warm; batch starts after the agent's first ticks, and the
                       agent keeps deciding while batch grows.

Two batch sizes by default: one that overflows the node (the OOM killer ends it, after it
has evicted online's cache) and one that fits (never OOM-killed: online thrashes for the
whole run). Target for colocd: online p99 and p99.9 read latency <= 1.5x alone, with its
cache kept (>= 90 % of what it had warm), while batch is throttled or OOM-killed first.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    MIB,
    Enforcement,
    WorkloadSpec,
    base_parser,
    bench_main,
    capacity_cores,
    colocd_agent,
    colocd_enforcement,
    fmt_ms,
    fmt_ratio,
    host_facts,
    median_latency,
    pod,
    print_table,
    workloads_in,
)
from benchmarks._tree import CgroupDir, build_tree
from lab.workloads import CacheInterval, LatencySummary, MemoryGrowth, median, stop_all
from lab.workloads.protocol import iter_kind
from qos.k8s_qos import QOSClass

NAME = "memory_pressure"
AGENT_TICKS = 3  # colocd's ticks before batch starts
AGENT_START_TIMEOUT_S = 30.0
TAIL_TARGET_RATIO = 1.5
CACHE_KEPT_SHARE = 0.9
WARM_TIMEOUT_S = 180.0
SAMPLE_EVERY_S = 0.5
NOTE_NOISE = (
    "The machine is shared (other jobs may run at the same time, and the data file sits on a"
    " shared disk): figures are noisy; compare setups within this run."
)


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n")[0], duration=15.0, repeats=3)
    parser.add_argument("--node-mib", type=int, default=2048, help="node-sized memory cgroup")
    parser.add_argument("--online-anon-mib", type=int, default=512)
    parser.add_argument("--online-cache-mib", type=int, default=400)
    parser.add_argument(
        "--batch-mib",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1600, 1400],
        help="comma-separated batch sizes, one kubelet and one colocd setup each",
    )
    parser.add_argument("--batch-rate-mib-s", type=float, default=200.0)
    return parser


@dataclass(frozen=True)
class Phase:
    setup: str
    repeat: int
    batch_target_mib: int | None
    enforcement: dict[str, Any]
    latency_us: LatencySummary
    online_cache_warm_mib: float | None
    online_cache_min_mib: float | None
    online_cache_end_mib: float | None
    online_disk_read_mib: float | None
    batch_peak_mib: float | None
    batch_exit: str | None
    batch_failcnt: int | None
    batch_oom_kills: int | None
    online_oom_kills: int | None
    timeline: list[dict[str, float | None]]


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    scratch: Path
    data_file: Path
    capacity_cores: float


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def _oom_kills(level: CgroupDir) -> int | None:
    """OOM kills in the level; None on kernels whose oom_control has no counter (< 4.13)."""
    stat = dict(line.split() for line in level.read("memory.oom_control").splitlines())
    return int(stat["oom_kill"]) if "oom_kill" in stat else None


def _stat(level: CgroupDir, key: str) -> int:
    stat = dict(line.split() for line in level.read("memory.stat").splitlines())
    return int(stat[key])


def _exit(code: int | None, oom_kills: int | None) -> str | None:
    if code is None:
        return None
    if code == -9:
        return "SIGKILL (OOM-killed)" if oom_kills else "SIGKILL"
    return "stopped by the harness" if code in (0, -15) else f"exit {code}"


KUBELET = Enforcement({}, "kubelet defaults (kubepods limit and oom_score_adj only)")


def run_phase(setup: str, batch_mib: int | None, repeat: int, ctx: Context) -> Phase:
    args = ctx.args
    node_bytes = args.node_mib * MIB
    online_mib = args.online_anon_mib + args.online_cache_mib
    pods = [pod("online", {"service": {"requests": {"cpu": "250m", "memory": f"{online_mib}Mi"}}})]
    specs = [
        WorkloadSpec(
            "service",
            "cache_service",
            (
                f"--file={ctx.data_file}",
                f"--file-mib={args.online_cache_mib}",
                f"--anon-mib={args.online_anon_mib}",
            ),
            "online",
            "service",
            samples=True,
        )
    ]
    if batch_mib is not None:
        pods.append(pod("batch", {"hog": {}}))
        specs.append(
            WorkloadSpec(
                "hog",
                "memory_hog",
                (f"--rate-mib-s={args.batch_rate_mib_s}", f"--target-mib={batch_mib}"),
                "batch",
                "hog",
            )
        )
    workdir = ctx.scratch / f"{setup.replace('/', '-')}-{repeat}"
    workdir.mkdir()
    cpu_milli = round(ctx.capacity_cores * 1000)
    with (
        build_tree(pods, cpu_milli, node_bytes) as tree,
        workloads_in(tree, workdir, specs) as procs,
        contextlib.ExitStack() as stack,
    ):
        service = procs["service"]
        service.open_gate()
        service.wait_started(WARM_TIMEOUT_S)
        online, besteffort = tree.pod("online"), tree.qos(QOSClass.BEST_EFFORT)
        enforcement = KUBELET
        if setup.startswith("colocd"):
            agent = stack.enter_context(colocd_agent(tree, workdir, cpu_milli, node_bytes))
            agent.wait_ticks(AGENT_TICKS, AGENT_START_TIMEOUT_S)
            enforcement = colocd_enforcement(tree, agent)
        warm_cache = _stat(online, "total_cache")
        t0 = time.monotonic()
        if "hog" in procs:
            procs["hog"].open_gate()
        timeline = []
        while (now := time.monotonic()) < t0 + args.duration:
            for proc in procs.values():
                proc.poll()
            timeline.append(
                {
                    "t": round(now - t0, 2),
                    "online_cache_mib": _stat(online, "total_cache") / MIB,
                    "besteffort_mib": int(besteffort.read("memory.usage_in_bytes")) / MIB,
                }
            )
            time.sleep(SAMPLE_EVERY_S)
        t1 = time.monotonic()
        failcnt = int(besteffort.read("memory.failcnt"))
        # v1 counts an OOM kill in the victim's own cgroup only (no propagation upwards).
        batch_oom = _oom_kills(tree.container("batch", "hog")) if "hog" in procs else None
        online_oom = _oom_kills(tree.container("online", "service"))
        codes = stop_all(list(procs.values()))
        samples = [s for s in service.samples() if t0 <= s.arrival_t <= t1]
        cache_reports = [r for r in iter_kind(service.reports, CacheInterval) if t0 <= r.t <= t1]
        growth = list(iter_kind(procs["hog"].reports, MemoryGrowth)) if "hog" in procs else []
    cache = [r.cache_bytes for r in cache_reports if r.cache_bytes is not None]
    disk = [r.disk_read_bytes for r in cache_reports if r.disk_read_bytes is not None]
    batch = batch_mib is not None
    return Phase(
        setup=setup,
        repeat=repeat,
        batch_target_mib=batch_mib,
        enforcement=enforcement._asdict(),
        latency_us=LatencySummary.of([s.latency_us for s in samples]),
        online_cache_warm_mib=warm_cache / MIB,
        online_cache_min_mib=_mib(min(cache)) if cache else None,
        online_cache_end_mib=_mib(cache[-1]) if cache else None,
        online_disk_read_mib=_mib(disk[-1] - disk[0]) if len(disk) > 1 else None,
        batch_peak_mib=_mib(max(g.anon_bytes for g in growth)) if growth else None,
        batch_exit=_exit(codes.get("hog"), batch_oom),
        batch_failcnt=failcnt if batch else None,
        batch_oom_kills=batch_oom,
        online_oom_kills=online_oom,
        timeline=timeline,
    )


def _total(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def setups_for(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    setups: list[tuple[str, int | None]] = [("alone", None)]
    for size in args.batch_mib:
        setups += [(f"kubelet/{size}MiB", size), (f"colocd/{size}MiB", size)]
    return setups


def summarise(phases: list[Phase], setups: list[tuple[str, int | None]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for setup, _ in setups:
        mine = [p for p in phases if p.setup == setup]
        summary[setup] = {
            "repeats": len(mine),
            **median_latency([p.latency_us for p in mine], "latency"),
            "online_cache_warm_mib": median([p.online_cache_warm_mib for p in mine]),
            "online_cache_min_mib": median([p.online_cache_min_mib for p in mine]),
            "online_disk_read_mib": median([p.online_disk_read_mib for p in mine]),
            "batch_peak_mib": median([p.batch_peak_mib for p in mine]),
            "batch_exits": sorted({p.batch_exit for p in mine if p.batch_exit}),
            "batch_limit_hits": median([p.batch_failcnt for p in mine]),
            "online_oom_kills": _total([p.online_oom_kills for p in mine]),
        }
    return summary


def check_targets(summary: dict[str, Any], setups: list[tuple[str, int | None]]) -> dict:
    alone = summary["alone"]
    checks: dict[str, Any] = {}
    for setup, _ in setups:
        if not setup.startswith("colocd"):
            continue
        s = summary[setup]
        verdict: dict[str, Any] = {}
        for metric in ("latency_p99_us", "latency_p999_us"):
            ratio = None if not alone[metric] or s[metric] is None else s[metric] / alone[metric]
            verdict[metric] = {
                "colocd": s[metric],
                "alone": alone[metric],
                "ratio": ratio,
                "met": ratio is not None and ratio <= TAIL_TARGET_RATIO,
            }
        warm, kept = s["online_cache_warm_mib"], s["online_cache_min_mib"]
        share = None if not warm or kept is None else kept / warm
        verdict["cache_kept"] = {
            "min_mib": kept,
            "warm_mib": warm,
            "share": share,
            "met": share is not None and share >= CACHE_KEPT_SHARE,
        }
        verdict["met"] = all(v["met"] for v in verdict.values() if isinstance(v, dict))
        checks[setup] = verdict
    checks["all_met"] = all(v["met"] for v in checks.values())
    return checks


def report(summary: dict[str, Any], checks: dict[str, Any], args: argparse.Namespace) -> None:
    alone = summary["alone"]
    rows = [
        {
            "setup": setup,
            "p50": fmt_ms(s["latency_p50_us"]),
            "p99": fmt_ms(s["latency_p99_us"]),
            "p99.9": fmt_ms(s["latency_p999_us"]),
            "p99_vs_alone": fmt_ratio(s["latency_p99_us"], alone["latency_p99_us"]),
            "cache_warm_mib": s["online_cache_warm_mib"],
            "cache_min_mib": s["online_cache_min_mib"],
            "disk_read_mib": s["online_disk_read_mib"],
            "batch_peak_mib": s["batch_peak_mib"],
            "batch": ", ".join(s["batch_exits"]) or None,
            "online_killed": s["online_oom_kills"],
        }
        for setup, s in summary.items()
    ]
    print_table(
        f"online read latency (ms), its page cache and batch's fate; {args.node_mib} MiB node,"
        f" online {args.online_anon_mib} MiB anon + {args.online_cache_mib} MiB cache,"
        f" batch growing {args.batch_rate_mib_s:g} MiB/s; medians of {args.repeats}"
        f" x {args.duration:g} s",
        rows,
        [(c.upper(), c) for c in rows[0]],
    )
    print("\ntargets (colocd: tail <= 1.5x alone, cache >= 90 % of warm):")
    for setup, verdict in checks.items():
        if setup == "all_met":
            continue
        p99, p999, cache = (
            verdict["latency_p99_us"],
            verdict["latency_p999_us"],
            verdict["cache_kept"],
        )
        print(
            f"  {setup:16} p99 {_ratio(p99['ratio'])}, p99.9 {_ratio(p999['ratio'])} of alone;"
            f" cache kept {_share(cache['share'])}: {'MET' if verdict['met'] else 'MISSED'}"
        )
    print(f"\nnote: {NOTE_NOISE}")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    ctx = Context(args, scratch, scratch / "online-data.bin", capacity_cores())
    setups = setups_for(args)
    print(
        f"memory pressure: {len(setups)} setups x {args.repeats} repeats x {args.duration:g} s"
        f" (plus the online service's warm-up each time)",
        flush=True,
    )
    phases = []
    for repeat in range(args.repeats):
        shift = repeat % len(setups)
        for setup, batch_mib in setups[shift:] + setups[:shift]:
            phase = run_phase(setup, batch_mib, repeat, ctx)
            phases.append(phase)
            print(
                f"  repeat {repeat} {setup:16} p99 {fmt_ms(phase.latency_us.p99)} ms"
                f"  p99.9 {fmt_ms(phase.latency_us.p999)} ms  cache min"
                f" {phase.online_cache_min_mib or 0:.0f} MiB  batch: {phase.batch_exit}"
                f"  [{phase.enforcement['reason']}]",
                flush=True,
            )
    summary = summarise(phases, setups)
    checks = check_targets(summary, setups)
    report(summary, checks, args)
    return {
        "config": {**vars(args), "results_dir": str(args.results_dir)},
        "host": host_facts(),
        "summary": summary,
        "targets": checks,
        "phases": [{**asdict(p), "latency_us": p.latency_us._asdict()} for p in phases],
        "notes": [NOTE_NOISE],
    }


def main() -> int:
    return bench_main(NAME, build_parser(), run)


if __name__ == "__main__":
    sys.exit(main())
