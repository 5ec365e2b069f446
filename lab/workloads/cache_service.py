"""An online service whose working set includes page cache, like a database or a search shard.

It holds `--anon-mib` of anonymous memory and serves requests from a `--file-mib` data
file it keeps in the page cache: every `--period-ms` a request reads `--pages` random
4 KiB pages with pread (open loop, as in the latency probe). A cached page costs
microseconds; one the kernel reclaimed costs a disk read. At start it writes the file (if
it is not already there at the right size), drops whatever the cache holds of it and reads
it back, so the cache is charged to its own cgroup; only then does it report `started`.

Each report carries the interval's read latency, its cgroup's page cache (`memory.stat`,
v1 `total_cache` or v2 `file`) and the bytes it has read from disk so far (/proc/self/io).
Run: `python -m lab.workloads.cache_service --report R --samples S --file PATH`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

from lab.workloads._lifecycle import Lifecycle, base_parser, run_workload
from lab.workloads._open_loop import run_open_loop
from lab.workloads.memory_hog import MIB, touch_anonymous
from lab.workloads.protocol import CacheInterval, write_samples
from lab.workloads.stats import percentile

NAME = "cache-service"
PAGE = 4096
WRITE_CHUNK = 4 * MIB
CACHE_KEYS = ("total_cache", "file")  # v1 (hierarchical), v2


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(
        "python -m lab.workloads.cache_service", __doc__.split("\n")[0], samples=True
    )
    parser.add_argument("--file", type=Path, required=True, help="data file (created if absent)")
    parser.add_argument("--file-mib", type=int, default=400)
    parser.add_argument("--anon-mib", type=int, default=512)
    parser.add_argument("--period-ms", type=float, default=2.0)
    parser.add_argument("--pages", type=int, default=8, help="random pages read per request")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def memory_cgroup_dir(proc_self_cgroup: Path, cgroup_root: Path) -> Path | None:
    """This process's memory cgroup directory: the v1 memory line, else the v2 line."""
    v2: Path | None = None
    for line in proc_self_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return cgroup_root / "memory" / path.lstrip("/")
        if controllers == "":
            v2 = cgroup_root / path.lstrip("/")
    return v2


def cgroup_cache_bytes(cgroup: Path | None) -> int | None:
    """Page cache charged to the cgroup; None when it cannot be read."""
    if cgroup is None:
        return None
    try:
        text = (cgroup / "memory.stat").read_text()
    except OSError:
        return None
    stat = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    for key in CACHE_KEYS:
        if key in stat:
            return int(stat[key])
    return None


def disk_read_bytes(proc_self_io: Path = Path("/proc/self/io")) -> int | None:
    try:
        for line in proc_self_io.read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def prepare_file(path: Path, size: int) -> int:
    """Create the data file if needed, then load it into the cache charged to this cgroup."""
    if not path.exists() or path.stat().st_size != size:
        block = bytes(range(256)) * (WRITE_CHUNK // 256)
        with path.open("wb") as f:
            for offset in range(0, size, WRITE_CHUNK):
                f.write(block[: min(WRITE_CHUNK, size - offset)])
            f.flush()
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    # Pages cached earlier may be charged to another cgroup; drop them and read back here.
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    while os.read(fd, WRITE_CHUNK):
        pass
    # From now on a miss reads one page, as a random-access store would, not a readahead.
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


def serve(args: argparse.Namespace, life: Lifecycle) -> None:
    cgroup = memory_cgroup_dir(Path("/proc/self/cgroup"), Path("/sys/fs/cgroup"))
    anon = touch_anonymous(args.anon_mib * MIB) if args.anon_mib else None
    size = args.file_mib * MIB
    fd = prepare_file(args.file, size)
    rng = random.Random(args.seed)
    pages_in_file = size // PAGE

    def read_pages(index: int) -> None:
        for _ in range(args.pages):
            os.pread(fd, PAGE, rng.randrange(pages_in_file) * PAGE)

    def summarise(now: float, latency: list[float], lateness: list[float]) -> CacheInterval:
        latency.sort()
        return CacheInterval(
            t=now,
            requests=len(latency),
            latency_p50_us=percentile(latency, 50),
            latency_p99_us=percentile(latency, 99),
            cache_bytes=cgroup_cache_bytes(cgroup),
            disk_read_bytes=disk_read_bytes(),
        )

    try:
        samples = run_open_loop(life, args.period_ms / 1000, read_pages, summarise)
    finally:
        os.close(fd)
        if anon is not None:
            anon.close()
    write_samples(args.samples, samples)


def main() -> int:
    return run_workload(NAME, build_parser(), serve)


if __name__ == "__main__":
    sys.exit(main())
