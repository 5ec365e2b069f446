"""Benchmark: the CPU cost of reading and reconciling a node's cgroups (not a test).

A real kubelet-like tree (lab.kubelet_tree) of 250 pods / 750 containers is built on this
host; then, with `time.process_time` (user + system CPU of this process):

- full read (the tick's read of usage and PSI): every pod's CPU usage and throttling, memory
  usage and working set (`memory.stat`) and PSI, plus every container's CPU and memory usage
  (`isolation.readings.POD_TICK` / `CONTAINER_TICK`); descriptors kept open (os.pread);
- every file: the same files as pods for all 1000 cgroups (diagnostics, not per tick);
- cold: the full read opening and closing every file (no kept descriptors), the way most
  agents read; and first sight: a new reader's first full read, which also resolves and
  checks every cgroup directory (once per cgroup);
- reconcile: one executor batch of cpu.shares, cpu.max and memory.max for every pod and
  container (3000 writes): the first pass (writes), then steady state with the cache
  (`force_rewrite_s`=60: no I/O) and without it (0: every file read, nothing written).

Prints the figures and writes benchmarks/results/cgroup_read.json. Needs root and cgroups.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from isolation.cgroups import Cgroups
from isolation.executor import Executor, Level, Write
from isolation.journal import Journal
from isolation.knobs import CpuMax
from isolation.layout import Driver
from isolation.readings import CONTAINER_TICK, POD_TICK
from lab.kubelet_tree import KubeletTree
from qos.pod import Container, Pod, Resources

TARGET_MS = 20.0
RESULTS = Path(__file__).resolve().parent / "results" / "cgroup_read.json"


def make_pods(count: int, containers: int) -> list[Pod]:
    """A third each of Guaranteed, Burstable and BestEffort pods."""
    pods = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            q = {"cpu": Decimal("0.25"), "memory": Decimal(64 << 20)}
            res = Resources(q, q)
        elif kind == 1:
            res = Resources({"cpu": Decimal("0.1")}, {"memory": Decimal(128 << 20)})
        else:
            res = Resources()
        cs = tuple(Container(f"c{j}", res) for j in range(containers))
        pods.append(Pod("bench", f"pod-{i}", containers=cs))
    return pods


def cpu_ms(fn: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(user, system) CPU milliseconds of each call."""
    out = []
    for _ in range(repeats):
        t0 = resource.getrusage(resource.RUSAGE_SELF)
        fn()
        t1 = resource.getrusage(resource.RUSAGE_SELF)
        out.append(((t1.ru_utime - t0.ru_utime) * 1000, (t1.ru_stime - t0.ru_stime) * 1000))
    return out


def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    total = sorted(u + s for u, s in samples)
    return {
        "median_ms": round(statistics.median(total), 2),
        "min_ms": round(total[0], 2),
        "max_ms": round(total[-1], 2),
        "median_user_ms": round(statistics.median(u for u, _ in samples), 2),
        "median_system_ms": round(statistics.median(s for _, s in samples), 2),
        "repeats": len(total),
    }


def run(pod_count: int, per_pod: int, repeats: int) -> dict[str, Any]:
    with KubeletTree(Driver.CGROUPFS) as tree:
        t0 = time.monotonic()
        pods = [tree.add_pod(p) for p in make_pods(pod_count, per_pod)]
        build_s = time.monotonic() - t0
        pod_cgs = [tree.pod_cgroup(p) for p in pods]
        ctr_cgs = [tree.container_cgroup(p, c) for p in pods for c in p.container_ids]
        every = pod_cgs + ctr_cgs
        cg = tree.cgroups

        def full(reader: Cgroups = cg) -> None:
            reader.sample_many(pod_cgs, POD_TICK)
            reader.sample_many(ctr_cgs, CONTAINER_TICK)

        def every_file() -> None:
            cg.sample_many(every, POD_TICK)

        unkept = Cgroups(tree.hierarchy, max_open_files=0)
        unkept.sample_many(every, POD_TICK)  # paths resolved once, nothing kept open

        def cold() -> None:
            full(unkept)

        def first_sight() -> None:
            fresh = Cgroups(tree.hierarchy)
            full(fresh)
            fresh.close()

        every_file()  # warm: descriptors opened once
        files = cg.open_files
        results: dict[str, Any] = {
            "full_read": summary(cpu_ms(full, repeats)),
            "every_file_read": summary(cpu_ms(every_file, repeats)),
        }
        results["cold_full_read"] = summary(cpu_ms(cold, max(3, repeats // 4)))
        results["first_sight_full_read"] = summary(cpu_ms(first_sight, 3))
        writes = []
        for p, pcg in zip(pods, pod_cgs, strict=True):
            writes += [
                Write("cpu.shares", pcg, 256, Level.POD),
                Write("cpu.max", pcg, CpuMax(400_000), Level.POD),
                Write("memory.max", pcg, 1 << 30, Level.POD),
            ]
            for c in p.container_ids:
                ccg = tree.container_cgroup(p, c)
                writes += [
                    Write("cpu.shares", ccg, 128, Level.CONTAINER),
                    Write("cpu.max", ccg, CpuMax(200_000), Level.CONTAINER),
                    Write("memory.max", ccg, 512 << 20, Level.CONTAINER),
                ]
        with tempfile.TemporaryDirectory() as state:
            journal = Journal(state, str(tree.hierarchy.root), cg.version)
            ex = Executor(cg, journal, force_rewrite_s=60)
            t0 = time.process_time()
            first = ex.apply(writes)
            first_ms = (time.process_time() - t0) * 1000
            cached = cpu_ms(lambda: ex.apply(writes), repeats)
            ex.force_rewrite_s = 0
            uncached = cpu_ms(lambda: ex.apply(writes), max(3, repeats // 4))
            reverted = ex.revert()
        results["reconcile"] = {
            "writes": len(writes),
            "first_pass_ms": round(first_ms, 1),
            "first_pass": first.counts(),
            "steady_cached": summary(cached),
            "steady_uncached": summary(uncached),
            "revert": reverted.counts(),
        }
        results["tree"] = {
            "pods": len(pods),
            "containers": len(ctr_cgs),
            "cgroup_version": cg.version,
            "mode": tree.hierarchy.mode.value,
            "hierarchies": sorted(tree.hierarchy.mounts()),
            "build_s": round(build_s, 2),
            "open_files": files,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=250)
    parser.add_argument("--containers-per-pod", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_cgroup_read: skipped: needs root to build cgroups", file=sys.stderr)
        return 0
    results = run(args.pods, args.containers_per_pod, args.repeats)
    results["target_full_read_ms"] = TARGET_MS
    results["host"] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    tree, rec, host = results["tree"], results["reconcile"], results["host"]
    print(
        f"cgroup read benchmark: {tree['pods']} pods / {tree['containers']} containers, "
        f"cgroup v{tree['cgroup_version']} ({tree['mode']}), load {host['loadavg_1m']}"
    )
    for name in ("full_read", "every_file_read", "cold_full_read", "first_sight_full_read"):
        s = results[name]
        print(
            f"  {name:21s} CPU per pass: median {s['median_ms']:7.2f} ms "
            f"(user {s['median_user_ms']:.1f} + system {s['median_system_ms']:.1f}; "
            f"min {s['min_ms']:.2f}, max {s['max_ms']:.2f})"
        )
    print(
        f"  reconcile ({rec['writes']} writes): first pass {rec['first_pass_ms']} ms CPU, "
        f"steady cached {rec['steady_cached']['median_ms']} ms, "
        f"uncached {rec['steady_uncached']['median_ms']} ms"
    )
    verdict = "meets" if results["full_read"]["median_ms"] <= TARGET_MS else "misses"
    print(f"  full read {verdict} the {TARGET_MS:.0f} ms target")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
