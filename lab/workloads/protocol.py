"""How a workload process talks to whoever started it: a gate, a report file, a samples file.

- **Gate.** Started with `--gate`, a workload reads one line from stdin before it does any
  work, so the harness can move its PID into cgroups first (memory is charged where a page
  is first touched). EOF instead of a line means "never mind": the workload exits quietly.
- **Report file** (`--report PATH`): JSON lines, flushed one by one, so a reader can follow
  it live. Every line has `kind` and `t` (CLOCK_MONOTONIC seconds, the clock of
  `time.monotonic()` and `time.perf_counter()` in every process on the host). Kinds and
  fields are the NamedTuples below.
- **Samples file** (`--samples PATH`): the request workloads keep every request and write
  them once, at exit, as native float64 triples `(arrival_t, lateness_us, latency_us)`;
  writing them during the run would add latency to the very requests being measured.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

from lab.errors import WorkloadError


class Started(NamedTuple):
    t: float
    pid: int
    workload: str


class ProbeInterval(NamedTuple):
    """The latency probe's last interval: request latency and wake-up lateness, µs."""

    t: float
    requests: int
    latency_p50_us: float | None
    latency_p99_us: float | None
    lateness_p99_us: float | None
    cpu_s: float


class Throughput(NamedTuple):
    """A CPU hog's work done so far (cumulative units), and its CPU time."""

    t: float
    units: int
    cpu_s: float


class MemoryGrowth(NamedTuple):
    t: float
    anon_bytes: int
    target_bytes: int


class CacheInterval(NamedTuple):
    """The cache service's last interval; `cache_bytes` is its cgroup's page cache."""

    t: float
    requests: int
    latency_p50_us: float | None
    latency_p99_us: float | None
    cache_bytes: int | None
    disk_read_bytes: int | None


class Ended(NamedTuple):
    t: float
    reason: str


Report = Started | ProbeInterval | Throughput | MemoryGrowth | CacheInterval | Ended

KINDS: dict[str, type] = {
    "started": Started,
    "probe": ProbeInterval,
    "throughput": Throughput,
    "memory": MemoryGrowth,
    "cache": CacheInterval,
    "ended": Ended,
}
_KIND_OF = {cls: kind for kind, cls in KINDS.items()}


class RequestSample(NamedTuple):
    arrival_t: float
    lateness_us: float
    latency_us: float


class ReportWriter:
    """Appends one JSON line per report and flushes it, so readers see it at once."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    @classmethod
    def open(cls, path: Path) -> ReportWriter:
        return cls(path.open("a", encoding="utf-8"))

    def write(self, report: Report) -> None:
        line = {"kind": _KIND_OF[type(report)], **report._asdict()}
        self._stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def parse_report(line: str, source: str) -> Report:
    try:
        fields = json.loads(line)
        cls = KINDS[fields.pop("kind")]
        return cls(**fields)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WorkloadError(f"read report {source}: bad line {line[:80]!r} ({err})") from err


class ReportReader:
    """Follows a report file: each `read_new()` returns the complete lines added since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def read_new(self) -> list[Report]:
        try:
            with self.path.open(encoding="utf-8") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        return [parse_report(line, str(self.path)) for line in lines if line]


def write_samples(path: Path, samples: array) -> None:
    """`samples` is a flat float64 array of (arrival_t, lateness_us, latency_us) triples."""
    with path.open("wb") as f:
        samples.tofile(f)


def read_samples(path: Path) -> list[RequestSample]:
    data = array("d")
    try:
        data.frombytes(path.read_bytes())
    except (OSError, ValueError) as err:
        raise WorkloadError(f"read samples {path}: {err}") from err
    if len(data) % 3:
        raise WorkloadError(f"read samples {path}: {len(data)} values is not whole triples")
    return [RequestSample(*data[i : i + 3]) for i in range(0, len(data), 3)]


def wait_for_gate(stdin: IO[str] = sys.stdin) -> bool:
    """Block until the harness says go; False when it closed the gate without a word."""
    return bool(stdin.readline())


R = TypeVar("R")


def iter_kind(reports: list[Report], kind: type[R]) -> Iterator[R]:
    return (r for r in reports if isinstance(r, kind))
