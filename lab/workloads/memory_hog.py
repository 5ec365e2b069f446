"""A batch memory hog: grows anonymous memory at a set rate up to a target, then holds it.

Every page is written, so the memory is really charged to the hog's cgroup (and, with no
swap, can only be given back by killing the hog). Reports the bytes grown so far every
`--report-every` seconds (default 0.25). When its cgroup's limit is hit, the kernel's OOM
killer ends it with SIGKILL: the harness sees that as the exit status.
Run: `python -m lab.workloads.memory_hog --report R --rate-mib-s 100 --target-mib 1600`.
"""

from __future__ import annotations

import argparse
import mmap
import sys
import time

from lab.workloads._lifecycle import Lifecycle, base_parser, run_workload
from lab.workloads.protocol import MemoryGrowth

NAME = "memory-hog"
MIB = 1 << 20
CHUNK_BYTES = 4 * MIB
HOLD_POLL_S = 0.05


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.workloads.memory_hog", __doc__.split("\n")[0])
    parser.set_defaults(report_every=0.25)
    parser.add_argument("--rate-mib-s", type=float, required=True, help="growth rate, MiB/s")
    parser.add_argument("--target-mib", type=int, required=True, help="size to grow to, MiB")
    return parser


def touch_anonymous(size: int) -> mmap.mmap:
    """Map `size` bytes of private anonymous memory and write one byte in every page."""
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, size, mmap.PAGESIZE):
        region[offset] = 1
    return region


def grow(args: argparse.Namespace, life: Lifecycle) -> None:
    target = args.target_mib * MIB
    held: list[mmap.mmap] = []
    grown = 0
    now = start = life.start()
    next_report = now
    while life.running(now):
        due = min(target, int((now - start) * args.rate_mib_s * MIB))
        while grown + CHUNK_BYTES <= due or (grown < due and due == target):
            size = min(CHUNK_BYTES, target - grown)
            held.append(touch_anonymous(size))
            grown += size
        now = time.monotonic()
        if now >= next_report:
            life.write(MemoryGrowth(t=now, anon_bytes=grown, target_bytes=target))
            next_report = now + life.report_every
        time.sleep(HOLD_POLL_S)
        now = time.monotonic()
    life.write(MemoryGrowth(t=now, anon_bytes=grown, target_bytes=target))


def main() -> int:
    return run_workload(NAME, build_parser(), grow)


if __name__ == "__main__":
    sys.exit(main())
