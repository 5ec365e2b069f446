"""`make gpu-check` here, without a GPU: one line, exit 0. And its cgroup, mapping and
freeze/thaw path on the real kernel, with the NVML double standing in for the GPU: the
double's utilisation is whether the kernel runs the workload (state R in /proc/<pid>/stat),
so it drops only if the freezer really stops the process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from isolation.gpu import GpuMonitor
from lab import gpu_check
from tests.fake_nvml import FakeGpu, FakeNvml

MARKER = "colocd-gpucheck-test-workload"
BUSY = f"# {MARKER}\nprint('ready', flush=True)\nwhile True: pass\n"


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lab.gpu_check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "no NVIDIA GPU here" not in out.stdout:
        pytest.skip("a GPU is here: make gpu-check runs the real check")
    assert out.returncode == 0
    assert out.stdout.count("\n") == 1 and out.stderr == ""


class CpuAsGpu(FakeNvml):
    """GPU 0 is 'busy' while the workload runs; it lists the workload as its process."""

    def __init__(self) -> None:
        super().__init__([FakeGpu(uuid="GPU-check")])

    def _workload(self) -> int | None:
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if MARKER.encode() in (d / "cmdline").read_bytes():
                        return int(d.name)
                except OSError:
                    continue
        return None

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        """Busy while the kernel says the workload runs (R); a frozen task is not R."""
        pid = self._workload()
        used = 0
        if pid is not None:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            used = 100 if state == "R" else 0
        return SimpleNamespace(gpu=used, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        pid = self._workload()
        return [] if pid is None else [SimpleNamespace(pid=pid, usedGpuMemory=None)]


@pytest.mark.cgroup_v1
@pytest.mark.cgroup_v2
def test_the_check_maps_freezes_and_thaws_its_workload(capsys: pytest.CaptureFixture) -> None:
    monitor = GpuMonitor(CpuAsGpu())
    assert gpu_check.check(monitor, BUSY) == 0
    out = capsys.readouterr().out
    assert "GPU 0: GPU-check" in out and "MIG n/a" in out
    assert "mapping: /proc/" in out and "colocd-gpucheck-" in out
    samples = {
        line.split()[0]: json.loads(line[line.index("[") : line.index("]") + 1])
        for line in out.splitlines()
        if line.startswith(("running", "frozen", "thawed"))
    }
    assert samples["frozen"] and set(samples["frozen"]) == {0}
    assert sum(samples["running"]) > 0 and sum(samples["thawed"]) > 0
    assert "gpu-check: PASS" in out
