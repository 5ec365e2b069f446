"""Direct reads from a block device for a while, then one JSON line: bytes read and seconds.

    python -m lab.workloads.io_reader /dev/loop3 3.0

O_DIRECT bypasses the page cache, so every read is a bio the IO controller sees and
charges to the reader's cgroup (blkio throttling on v1, io.max/io.weight on v2). It reads
64 KiB blocks in order, wrapping at the device's end.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import time

BLOCK = 1 << 16


def read_for(device: str, seconds: float) -> tuple[int, float]:
    fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT requires
        offset = done = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if offset + BLOCK > size:
                offset = 0
            got = os.preadv(fd, [buf], offset)
            offset += got
            done += got
        return done, elapsed
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    device, seconds = argv[0], float(argv[1])
    done, elapsed = read_for(device, seconds)
    print(json.dumps({"bytes": done, "seconds": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
