"""A loop block device of its own for IO tests: a sparse file attached with util-linux
`losetup --find --show`, detached and removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def loop_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to attach a loop device"
    if shutil.which("losetup") is None:
        return "no losetup (util-linux)"
    if not Path("/dev/loop-control").exists():
        # A modular loop driver is not loaded until first use (the VM of tests/vm boots
        # without it; the host's /lib/modules is shared into it).
        with contextlib.suppress(OSError):  # no modprobe at all: said below
            subprocess.run(["modprobe", "loop"], capture_output=True, check=False)
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control (loop driver missing, modprobe loop failed)"
    return None


@contextlib.contextmanager
def loop_device(size: int = 256 << 20) -> Iterator[Path]:
    """/dev/loopN backed by a file of `size` bytes written with zeros (so reads hit it)."""
    fd, backing = tempfile.mkstemp(prefix="colocd-io-", suffix=".img")
    try:
        block = b"\0" * (1 << 20)
        for _ in range(size // len(block)):
            os.write(fd, block)
        os.close(fd)
        out = subprocess.run(
            ["losetup", "--find", "--show", backing], capture_output=True, text=True, check=True
        )
        device = Path(out.stdout.strip())
        try:
            yield device
        finally:
            subprocess.run(["losetup", "--detach", str(device)], check=False)
    finally:
        os.unlink(backing)
