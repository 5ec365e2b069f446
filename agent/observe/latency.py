"""The online latency the margin controller can hold to a target (`margin.indicator:
latency`), read from a file the online service (or a sidecar) writes.

The file holds one number, in the unit of `margin.target` (e.g. p99 milliseconds), and
nothing else but whitespace. The reading is as old as the file: its time is the loop's
`at` minus the file's age by its modification time, so a service that stops writing leaves
an old reading the controller does not count twice (the margin holds). A file that is
missing, unreadable or not one finite, non-negative number is a missing reading, with a
one-line note saying why; it never stops the tick.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

from qos.samples import LatencyReading


class LatencyRead(NamedTuple):
    reading: LatencyReading | None
    note: str | None  # why there is no reading, for the tick's notes


class LatencyFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, at: float, wall: float) -> LatencyRead:
        """The latency as of the file's last write, on the loop's clock (`at` is now on that
        clock, `wall` now on the wall clock the file's mtime is on)."""
        try:
            with self.path.open() as f:
                mtime = os.fstat(f.fileno()).st_mtime
                text = f.read(256)
        except OSError as err:
            return LatencyRead(None, f"latency file {self.path}: {err.strerror or err}")
        try:
            value = float(text.strip())
        except ValueError:
            why = f"{text.strip()[:40]!r} is not a number"
            return LatencyRead(None, f"latency file {self.path}: {why}")
        if not math.isfinite(value) or value < 0:
            why = f"{value!r} is not finite and >= 0"
            return LatencyRead(None, f"latency file {self.path}: {why}")
        age = max(0.0, wall - mtime)
        return LatencyRead(LatencyReading(at - age, value), None)
