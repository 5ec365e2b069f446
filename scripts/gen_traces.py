#!/usr/bin/env python3
"""Generate the example traces in examples/traces/ for `colocd simulate` (deterministic).

Each trace is a node of 32 cores and 128 GiB with online work that changes in one
characteristic way, a system tier of about one core and 4 GiB, and a batch backlog that
would take every core and most of the memory it is offered:

  diurnal.csv   24 h at 60 s: online follows a day (4 -> 18 cores, 30 -> 60 GiB) with noise
  bursty.csv    2 h at 2 s: online at 6 cores with bursts of +8..+14 cores for 10-60 s
  step.csv      2 h at 5 s: online steps 5 -> 18 cores at 40 min and down to 8 at 80 min
  noisy.jsonl   1 h at 2 s: online around 12 cores with strong AR(1) noise; 1 % of the
                online readings are missing (null), as a flaky collector would leave them

Run: python3 scripts/gen_traces.py [--out examples/traces] [--seed 20240601]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

GIB = 1024**3
MIB = 1024**2
CORES = 32
MEMORY = 128 * GIB
COLUMNS = (
    "t",
    "cpu_capacity_milli",
    "online_cpu_milli",
    "batch_cpu_demand_milli",
    "system_cpu_milli",
    "memory_capacity_bytes",
    "online_memory_bytes",
    "batch_memory_demand_bytes",
    "system_memory_bytes",
)

Row = dict[str, float | None]


def _row(rng: random.Random, t: float, online_cores: float, online_gib: float) -> Row:
    return {
        "t": t,
        "cpu_capacity_milli": CORES * 1000,
        "online_cpu_milli": round(max(0.0, min(CORES, online_cores)) * 1000),
        "batch_cpu_demand_milli": CORES * 1000,
        "system_cpu_milli": round(max(0.2, rng.gauss(1.0, 0.1)) * 1000),
        "memory_capacity_bytes": MEMORY,
        "online_memory_bytes": round(max(1.0, online_gib) * GIB / MIB) * MIB,
        "batch_memory_demand_bytes": 96 * GIB,
        "system_memory_bytes": 4 * GIB,
    }


def diurnal(rng: random.Random) -> Iterator[Row]:
    for i in range(24 * 60):
        t = i * 60.0
        day = 0.5 - 0.5 * math.cos(2 * math.pi * (t - 3 * 3600) / 86400)
        yield _row(rng, t, 4 + 14 * day + rng.gauss(0, 0.8), 30 + 30 * day + rng.gauss(0, 1))


def bursty(rng: random.Random) -> Iterator[Row]:
    burst_until, extra = -1.0, 0.0
    for i in range(3600):
        t = i * 2.0
        if t >= burst_until and rng.random() < 2.0 / 240:  # one burst per ~4 min
            burst_until, extra = t + rng.uniform(10, 60), rng.uniform(8, 14)
        bump = extra if t < burst_until else 0.0
        yield _row(rng, t, 6 + bump + rng.gauss(0, 0.5), 30 + bump / 3 + rng.gauss(0, 0.3))


def step(rng: random.Random) -> Iterator[Row]:
    for i in range(1440):
        t = i * 5.0
        level = 5 if t < 2400 else 18 if t < 4800 else 8
        mem = 20 if t < 2400 else 60 if t < 4800 else 30
        yield _row(rng, t, level + rng.gauss(0, 0.4), mem + rng.gauss(0, 0.5))


def noisy(rng: random.Random) -> Iterator[Row]:
    ar = 0.0
    for i in range(1800):
        t = i * 2.0
        ar = 0.8 * ar + rng.gauss(0, 1.8)
        row = _row(rng, t, 12 + ar, 50 + ar / 2 + rng.gauss(0, 1))
        if rng.random() < 0.01:
            row["online_cpu_milli"] = None
        yield row


def _write_csv(path: Path, rows: Iterator[Row]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else f"{v:g}" if k == "t" else v for k, v in r.items()})


def _write_jsonl(path: Path, rows: Iterator[Row]) -> None:
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


TRACES: dict[str, tuple[Callable[[random.Random], Iterator[Row]], Callable[..., None]]] = {
    "diurnal.csv": (diurnal, _write_csv),
    "bursty.csv": (bursty, _write_csv),
    "step.csv": (step, _write_csv),
    "noisy.jsonl": (noisy, _write_jsonl),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "examples/traces")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (name, (make, write)) in enumerate(TRACES.items()):
        write(args.out / name, make(random.Random(args.seed + i)))
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
