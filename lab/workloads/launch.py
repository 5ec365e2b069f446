"""Starting workloads as subprocesses and following what they report (harness side).

A workload is spawned behind its gate (`--gate`), so the caller can put its PID into
cgroups before it does any work, then `open_gate()`. `stop()` ends it (SIGTERM, then
SIGKILL after a grace period) and reaps it; it only ever signals the process it started.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import WorkloadError
from lab.workloads.protocol import (
    Report,
    ReportReader,
    RequestSample,
    Started,
    read_samples,
)

STOP_GRACE_S = 5.0
POLL_S = 0.02


@dataclass
class WorkloadProcess:
    """One running workload: its process, its report file and (optionally) samples file."""

    name: str
    popen: subprocess.Popen
    report_path: Path
    samples_path: Path | None
    reports: list[Report] = field(default_factory=list)
    _reader: ReportReader | None = None
    _gate_opened: bool = False
    _asked_to_stop: bool = False

    @classmethod
    def spawn(
        cls, name: str, module: str, args: Sequence[str], workdir: Path, samples: bool = False
    ) -> WorkloadProcess:
        """Start `python -m lab.workloads.<module>` behind its gate, files in `workdir`."""
        report = workdir / f"{name}.report.jsonl"
        samples_path = workdir / f"{name}.samples" if samples else None
        argv = [sys.executable, "-m", f"lab.workloads.{module}", "--gate"]
        argv += ["--report", str(report), *args]
        if samples_path is not None:
            argv += ["--samples", str(samples_path)]
        stderr = (workdir / f"{name}.stderr").open("wb")
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=stderr)
        except OSError as err:
            raise WorkloadError(f"start workload {name}: {err.strerror}") from err
        finally:
            stderr.close()
        return cls(name, popen, report, samples_path, _reader=ReportReader(report))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def open_gate(self) -> None:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(b"go\n")
            self.popen.stdin.close()
            self._gate_opened = True
        except BrokenPipeError as err:
            raise WorkloadError(f"start workload {self.name}: {self._why_dead()}") from err

    def poll(self) -> list[Report]:
        """Read the reports added since the last call; also kept in `self.reports`."""
        assert self._reader is not None
        new = self._reader.read_new()
        self.reports.extend(new)
        return new

    def wait_started(self, timeout: float) -> Started:
        """Wait for the `started` report (after the gate and any warm-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            for report in self.reports:
                if isinstance(report, Started):
                    return report
            if self.popen.poll() is not None:
                raise WorkloadError(f"start workload {self.name}: {self._why_dead()}")
            time.sleep(POLL_S)
        raise WorkloadError(f"start workload {self.name}: not started after {timeout:g} s")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def ask_to_stop(self) -> None:
        """SIGTERM once it runs; before that, closing its gate is enough (it exits on EOF).

        Only one SIGTERM: Python restores the default handler while it shuts down, so a
        second one would kill a workload that is already ending cleanly.
        """
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            self.popen.stdin.close()
        if self._gate_opened and not self._asked_to_stop and self.popen.poll() is None:
            self._asked_to_stop = True
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """End the process if it still runs, reap it, read its last reports; its exit status."""
        self.ask_to_stop()
        if self.popen.poll() is None:
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.poll()
        return self.popen.returncode

    def samples(self) -> list[RequestSample]:
        if self.samples_path is None:
            raise WorkloadError(f"read samples {self.name}: it was started without samples")
        return read_samples(self.samples_path)

    def stderr_tail(self, limit: int = 300) -> str:
        path = self.report_path.with_name(f"{self.name}.stderr")
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return text[-limit:].replace("\n", " | ")

    def _why_dead(self) -> str:
        code = self.popen.poll()
        if code is None:
            return "its gate is closed"
        tail = self.stderr_tail()
        return f"exited with status {code}" + (f": {tail}" if tail else "")


def stop_all(workloads: Sequence[WorkloadProcess]) -> dict[str, int]:
    """Stop every workload, all at once (SIGTERM first to all, then wait); exit statuses."""
    for w in workloads:
        w.ask_to_stop()
    return {w.name: w.stop() for w in workloads}
