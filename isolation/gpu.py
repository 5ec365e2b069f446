"""GPU readings through NVML (pynvml): devices, their utilisation and memory, and which
processes use which GPU, so that GPU use can be attributed to pods through PIDs.

One front: `GpuMonitor(nvml=None)` talks to the real pynvml module, or to any object with
the same functions (the test double). A machine without NVML (library absent, driver not
loaded) is a state, not a crash: `state.available` is False, with the reason, and every
reading is empty. Values a GPU does not report (NVML_ERROR_NOT_SUPPORTED, e.g. under MIG)
read as None, never 0. Other NVML failures are translated into `NvmlCallError` /
`GpuLostError` (see `isolation._gpu_errors`), chained from the NVMLError.

Batch GPU freeze, for the tick loop: colocd never signals GPU processes itself. The loop
takes `pids_by_gpu()`, maps each PID to its pod through /proc/<pid>/cgroup, and freezes the
batch pods among them with the cgroup freezer (v1 `freezer.state`, v2 `cgroup.freeze`,
through the cgroup knobs). A frozen process launches no more kernels, so online work gets
the SMs back, but it keeps its GPU memory: when online needs memory, batch must be evicted,
not frozen. Thawing is the reverse, once online's GPU use falls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, TypeVar

import pynvml

from isolation._gpu_errors import GpuLostError, NvmlCallError

T = TypeVar("T")

# Codes that mean "no NVML on this machine": the state says so, nothing raises.
_ABSENT = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: "NVML library not found (no NVIDIA driver)",
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "NVIDIA driver not loaded",
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: "NVML library and driver versions differ",
}
# Codes that mean "this GPU does not report that value": the reading is None.
_MISSING = {pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NOT_FOUND, pynvml.NVML_ERROR_NO_DATA}
_LOST = {pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED}


class NvmlApi(Protocol):
    """The part of pynvml colocd calls; errors are raised as pynvml.NVMLError."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str: ...
    def nvmlDeviceGetName(self, handle: Any) -> str: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]: ...
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[Any]: ...
    def nvmlDeviceGetProcessUtilization(self, handle: Any, since_us: int) -> list[Any]: ...
    def nvmlDeviceGetMinorNumber(self, handle: Any) -> int: ...
    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]: ...


class GpuState(NamedTuple):
    available: bool
    reason: str | None  # why not available
    driver_version: str | None
    device_count: int


class GpuReading(NamedTuple):
    index: int
    uuid: str | None
    name: str | None
    sm_percent: int | None  # time a kernel ran, over NVML's last sample period
    memory_io_percent: int | None  # time device memory was read or written
    memory_used_bytes: int | None
    memory_total_bytes: int | None


class GpuProcess(NamedTuple):
    gpu_index: int
    gpu_uuid: str | None
    pid: int
    kind: str  # "compute" or "graphics"
    memory_used_bytes: int | None
    sm_percent: int | None  # latest sample since the previous processes() call


class GpuDevice(NamedTuple):
    """One GPU as `survey()` read it: its reading and processes, or the NVML error that
    stopped the reading of this device alone (the others are still read)."""

    index: int
    reading: GpuReading | None
    processes: tuple[GpuProcess, ...]
    minor: int | None  # /dev/nvidia<minor>, what device cgroups name (major 195)
    error: str | None = None


class GpuMonitor:
    """Readings from every GPU NVML sees. Keeps, per GPU, the timestamp of the last
    per-process sample read, so each processes() call reports only new samples."""

    def __init__(self, nvml: NvmlApi | None = None) -> None:
        self._nvml: NvmlApi = pynvml if nvml is None else nvml
        self._last_sample_us: dict[int, int] = {}
        try:
            self._nvml.nvmlInit()
        except pynvml.NVMLError as err:
            if err.value not in _ABSENT:
                raise _translate(err, "initialise", None, "nvmlInit") from err
            self.state = GpuState(False, _ABSENT[err.value], None, 0)
            return
        self.state = GpuState(
            True,
            None,
            self._read(None, "read driver version", self._nvml.nvmlSystemGetDriverVersion),
            self._call(None, "count devices", self._nvml.nvmlDeviceGetCount),
        )

    def close(self) -> None:
        if self.state.available:
            self._call(None, "shut down", self._nvml.nvmlShutdown)
            self.state = self.state._replace(available=False, reason="closed")

    def __enter__(self) -> GpuMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readings(self) -> tuple[GpuReading, ...]:
        return tuple(self._reading(i) for i in self._indices())

    def processes(self) -> tuple[GpuProcess, ...]:
        return tuple(p for i in self._indices() for p in self._processes_on(i, self._handle(i)))

    def survey(self) -> tuple[GpuDevice, ...]:
        """Every GPU's reading and processes; an NVML failure on one GPU (lost, reset
        required, a timeout) is that device's `error`, never the whole survey's."""
        out = []
        for i in self._indices():
            try:
                handle = self._handle(i)
                minor = self._read(
                    i, "read minor number", self._nvml.nvmlDeviceGetMinorNumber, handle
                )
                out.append(GpuDevice(i, self._reading(i), self._processes_on(i, handle), minor))
            except NvmlCallError as err:
                out.append(GpuDevice(i, None, (), None, str(err)))
        return tuple(out)

    def mig_mode(self, index: int) -> bool | None:
        """Whether MIG is on (current mode); None where the GPU has no MIG."""
        handle = self._handle(index)
        mode = self._read(index, "read MIG mode", self._nvml.nvmlDeviceGetMigMode, handle)
        return None if mode is None else bool(mode[0])

    def pids_by_gpu(self) -> dict[int, frozenset[int]]:
        """GPU index → the PIDs using it (what the loop needs to freeze batch GPU users)."""
        pids: dict[int, set[int]] = {i: set() for i in self._indices()}
        for p in self.processes():
            pids[p.gpu_index].add(p.pid)
        return {i: frozenset(s) for i, s in pids.items()}

    # --- NVML calls ------------------------------------------------------------------------

    def _indices(self) -> range:
        return range(self.state.device_count if self.state.available else 0)

    def _handle(self, index: int) -> Any:
        return self._call(index, "open", self._nvml.nvmlDeviceGetHandleByIndex, index)

    def _processes_on(self, i: int, handle: Any) -> tuple[GpuProcess, ...]:
        uuid = _text(self._read(i, "read UUID", self._nvml.nvmlDeviceGetUUID, handle))
        sm = self._process_sm(i, handle)
        found: list[GpuProcess] = []
        for kind, list_them in (
            ("compute", self._nvml.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", self._nvml.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            for p in self._read(i, f"list {kind} processes", list_them, handle) or ():
                found.append(GpuProcess(i, uuid, p.pid, kind, p.usedGpuMemory, sm.get(p.pid)))
        return tuple(found)

    def _reading(self, index: int) -> GpuReading:
        h = self._handle(index)
        util = self._read(index, "read utilisation", self._nvml.nvmlDeviceGetUtilizationRates, h)
        mem = self._read(index, "read memory", self._nvml.nvmlDeviceGetMemoryInfo, h)
        return GpuReading(
            index=index,
            uuid=_text(self._read(index, "read UUID", self._nvml.nvmlDeviceGetUUID, h)),
            name=_text(self._read(index, "read name", self._nvml.nvmlDeviceGetName, h)),
            sm_percent=None if util is None else util.gpu,
            memory_io_percent=None if util is None else util.memory,
            memory_used_bytes=None if mem is None else mem.used,
            memory_total_bytes=None if mem is None else mem.total,
        )

    def _process_sm(self, index: int, handle: Any) -> Mapping[int, int]:
        """PID → SM % of its latest sample newer than the last one read from this GPU."""
        since = self._last_sample_us.get(index, 0)
        samples = self._read(
            index, "read process utilisation", self._nvml.nvmlDeviceGetProcessUtilization,
            handle, since,
        )  # fmt: skip
        latest: dict[int, Any] = {}
        for s in samples or ():
            if s.timeStamp > since and (
                s.pid not in latest or s.timeStamp > latest[s.pid].timeStamp
            ):
                latest[s.pid] = s
        if latest:
            self._last_sample_us[index] = max(s.timeStamp for s in latest.values())
        return {pid: s.smUtil for pid, s in latest.items()}

    def _read(self, gpu: int | None, action: str, fn: Callable[..., T], *args: Any) -> T | None:
        """`fn(*args)`, or None where the GPU does not report that value."""
        try:
            with _translated(action, gpu, fn):
                return fn(*args)
        except NvmlCallError as err:
            if err.code in _MISSING:
                return None
            raise

    def _call(self, gpu: int | None, action: str, fn: Callable[..., T], *args: Any) -> T:
        with _translated(action, gpu, fn):
            return fn(*args)


@contextmanager
def _translated(action: str, gpu: int | None, fn: Callable[..., Any]) -> Iterator[None]:
    try:
        yield
    except pynvml.NVMLError as err:
        raise _translate(err, action, gpu, getattr(fn, "__name__", "nvml")) from err


def _translate(err: pynvml.NVMLError, action: str, gpu: int | None, function: str):
    cls = GpuLostError if err.value in _LOST else NvmlCallError
    return cls(action, gpu, function, err.value, str(err))


def _text(value: str | bytes | None) -> str | None:
    """Older pynvml releases return bytes."""
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["GpuDevice", "GpuMonitor", "GpuProcess", "GpuReading", "GpuState", "NvmlApi"]
