"""`make gpu-check`: colocd's GPU path against a real NVIDIA GPU, in well under 3 minutes.

1. Lists the GPUs NVML sees (index, UUID, name, memory, MIG mode) through `isolation.gpu`.
2. Makes a cgroup of its own beneath this process's (v2: `cgroup.freeze` needs no
   controller; v1: the freezer hierarchy) and starts in it a small program that keeps GPU 0
   busy through the CUDA driver API (ctypes on libcuda: cuInit, cuCtxCreate, cuModuleLoadData
   of a tiny PTX spin kernel, cuLaunchKernel in a loop). Nothing is installed: no CUDA
   toolkit, no framework; the driver JIT-compiles the PTX.
3. Finds the process in NVML's list of GPU 0's compute processes and maps it to its cgroup
   with the agent's code (`isolation.proc_info.cgroup_of`, as `agent.observe.gpus` does).
4. Samples GPU 0's utilisation while the kernel runs, freezes the cgroup through the knob
   table (`freeze`: cgroup.freeze / freezer.state), samples, thaws, samples again, and
   checks that utilisation dropped while frozen and recovered after.

Without a GPU (no NVML library, no driver, no device) it says so in one line and exits 0.
Exit 1 when a check fails, 2 when the check itself cannot run (no cgroup hierarchy, no
libcuda). Everything it made (process, cgroup) is removed, even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from isolation.cgroups import Cgroups
from isolation.detect import Hierarchy, Mode, detect_hierarchy
from isolation.errors import IsolationError
from isolation.gpu import GpuMonitor
from isolation.proc_info import cgroup_of

SETTLE_S = 2.0  # NVML averages utilisation over up to a second: let it turn over
SAMPLE_S = 4.0
STEP_S = 0.25
BUSY_PERCENT = 50.0  # running: at least this busy
FROZEN_PERCENT = 10.0  # frozen: at most this busy

# The GPU workload, run as its own process: spin kernels back to back on GPU 0 until killed.
WORKLOAD = r"""
import ctypes, sys
PTX = b'''
.version 7.0
.target sm_70
.address_size 64
.visible .entry spin(.param .u64 cycles)
{
  .reg .u64 %rd<5>;
  .reg .pred %p1;
  ld.param.u64 %rd1, [cycles];
  mov.u64 %rd2, %clock64;
LOOP:
  mov.u64 %rd3, %clock64;
  sub.u64 %rd4, %rd3, %rd2;
  setp.lt.u64 %p1, %rd4, %rd1;
  @%p1 bra LOOP;
  ret;
}
''' + b'\0'
cuda = ctypes.CDLL("libcuda.so.1")
def check(what, rc):
    if rc != 0:
        sys.stderr.write(f"workload: {what} failed: CUDA error {rc}\n")
        sys.exit(3)
dev, ctx, mod, fn = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
check("cuInit", cuda.cuInit(0))
check("cuDeviceGet", cuda.cuDeviceGet(ctypes.byref(dev), 0))
check("cuCtxCreate", cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev))
check("cuModuleLoadData", cuda.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(PTX)))
check("cuModuleGetFunction", cuda.cuModuleGetFunction(ctypes.byref(fn), mod, b"spin"))
cycles = ctypes.c_uint64(100_000_000)  # ~50 ms at 2 GHz per launch
params = (ctypes.c_void_p * 1)(ctypes.cast(ctypes.pointer(cycles), ctypes.c_void_p))
print("ready", flush=True)
while True:
    check("cuLaunchKernel", cuda.cuLaunchKernel(fn, 132, 1, 1, 32, 1, 1, 0, None, params, None))
    check("cuCtxSynchronize", cuda.cuCtxSynchronize())
"""


def say(line: str) -> None:
    print(line, flush=True)


def _own_dir(hierarchy: Hierarchy) -> tuple[str, str]:
    """(controller the freeze knob lives in, this process's cgroup there)."""

    controller = "" if hierarchy.mode is Mode.V2 else "freezer"
    own = cgroup_of(os.getpid(), hierarchy, controller=controller or None)
    if own is None:
        raise RuntimeError(f"find own cgroup: no {controller or 'unified'} line in /proc/self")
    return controller, own


def _sample(monitor: GpuMonitor, index: int, seconds: float) -> list[int]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = monitor.readings()[index]
        if r.sm_percent is not None:
            out.append(r.sm_percent)
        time.sleep(STEP_S)
    return out


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else float("nan")


@contextlib.contextmanager
def _in_cgroup(
    cgroups: Cgroups, rel: str, directory: Path, workload: str
) -> Iterator[subprocess.Popen[str]]:
    """`workload` started inside a new cgroup; afterwards thawed, killed, the cgroup gone."""
    directory.mkdir()
    procs = str(directory / "cgroup.procs")

    def enter() -> None:
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", workload],
            preexec_fn=enter,  # noqa: PLW1509 (no threads here; it joins the cgroup before exec)
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the CUDA workload did not start (exit {proc.wait(30)})")
            yield proc
        finally:
            with contextlib.suppress(IsolationError):
                cgroups.write("freeze", rel, False)  # a frozen process cannot die
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
    finally:
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def _freeze_and_thaw(monitor: GpuMonitor, cgroups: Cgroups, rel: str) -> list[str]:
    """GPU 0's utilisation running, frozen and thawed; what did not behave."""
    means = []
    for label, frozen in (("running", None), ("frozen", True), ("thawed", False)):
        if frozen is not None:
            cgroups.write("freeze", rel, frozen)
            time.sleep(SETTLE_S)
        values = _sample(monitor, 0, SAMPLE_S)
        state = cgroups.read("freeze", rel).texts[0].strip()
        means.append(_mean(values))
        say(f"{label:8s} ({state}): GPU 0 utilisation {values} mean {_mean(values):.0f}%")
    run, frz, thw = means
    failures = []
    if not run >= BUSY_PERCENT:
        failures.append(f"running: {run:.0f}% < {BUSY_PERCENT:.0f}%")
    if not frz <= FROZEN_PERCENT:
        failures.append(f"frozen: {frz:.0f}% > {FROZEN_PERCENT:.0f}%")
    if not thw >= BUSY_PERCENT:
        failures.append(f"thawed: {thw:.0f}% < {BUSY_PERCENT:.0f}%")
    return failures


def check(monitor: GpuMonitor, workload: str = WORKLOAD) -> int:
    """The check on an open NVML; `workload` is the program that keeps GPU 0 busy."""
    say(f"NVML driver {monitor.state.driver_version}, {monitor.state.device_count} GPU(s):")
    for r in monitor.readings():
        mem = "?" if r.memory_total_bytes is None else f"{r.memory_total_bytes / 2**30:.1f} GiB"
        mig = monitor.mig_mode(r.index)
        mig_text = "n/a" if mig is None else ("on" if mig else "off")
        say(f"  GPU {r.index}: {r.uuid}  {r.name}  memory {mem}  MIG {mig_text}")

    hierarchy = detect_hierarchy()
    cgroups = Cgroups(hierarchy)
    controller, own = _own_dir(hierarchy)
    rel = f"{own}/colocd-gpucheck-{secrets.token_hex(4)}".lstrip("/")
    directory = cgroups.dir(controller or "cpu", rel)  # v2: one tree, the name is ignored
    failures: list[str] = []
    try:
        with _in_cgroup(cgroups, rel, directory, workload) as proc:
            say(f"cgroup: /{rel} ({'v1 freezer' if controller else 'v2 cgroup.freeze'})")
            say(f"workload: pid {proc.pid} running spin kernels on GPU 0")
            mapped = cgroup_of(proc.pid, hierarchy, controller=controller or None)
            say(f"mapping: /proc/{proc.pid}/cgroup -> /{mapped}")
            if mapped != rel:
                failures.append(f"pid {proc.pid} maps to /{mapped}, not /{rel}")
            time.sleep(SETTLE_S)
            seen = [p.pid for p in monitor.survey()[0].processes]
            say(f"NVML compute/graphics processes on GPU 0: {seen}")
            if proc.pid not in seen:
                say("  (pid not listed: NVML reports host PIDs; a PID namespace hides them)")
            failures += _freeze_and_thaw(monitor, cgroups, rel)
    finally:
        monitor.close()
        cgroups.close()
    if failures:
        say("gpu-check: FAIL: " + "; ".join(failures))
        return 1
    say("gpu-check: PASS: utilisation dropped while frozen and recovered after the thaw")
    return 0


def main() -> int:
    try:
        monitor = GpuMonitor()  # the real pynvml
    except IsolationError as err:
        say(f"gpu-check: error: {err}")
        return 2
    state = monitor.state
    if not state.available or state.device_count == 0:
        why = state.reason or "NVML sees no device"
        say(f"gpu-check: no NVIDIA GPU here ({why}); nothing to check")
        return 0
    try:
        return check(monitor)
    except (OSError, RuntimeError, IsolationError) as err:
        say(f"gpu-check: error: {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
