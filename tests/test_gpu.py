"""GPU readings through NVML: the double for the suite, real NVML when a GPU is present."""

from __future__ import annotations

import pynvml
import pytest

from isolation._gpu_errors import GpuError, GpuLostError, NvmlCallError
from isolation.errors import IsolationError
from isolation.gpu import GpuMonitor, GpuProcess, GpuReading
from tests.fake_nvml import FakeGpu, FakeNvml

GIB = 2**30


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                uuid="GPU-aaaa",
                sm_percent=87,
                memory_io_percent=40,
                memory_used=30 * GIB,
                compute=[(4242, 20 * GIB), (4343, None)],
                samples=[(4242, 100, 50), (4242, 200, 70), (4343, 150, 10)],
            ),
            FakeGpu(uuid="GPU-bbbb", name=b"NVIDIA A100", graphics=[(77, GIB)]),
        ]
    )


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML library not found (no NVIDIA driver)"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVIDIA driver not loaded"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "NVML library and driver versions differ"),
    ],
)
def test_no_nvml_is_a_state_not_a_crash(code, reason):
    nvml = FakeNvml([FakeGpu()], init_error=code)
    with GpuMonitor(nvml) as gpus:
        assert not gpus.state.available
        assert gpus.state.reason == reason
        assert gpus.state.device_count == 0
        assert gpus.readings() == ()
        assert gpus.processes() == ()
        assert gpus.pids_by_gpu() == {}
    assert nvml.calls == ["nvmlInit"]  # nothing else was asked, no shutdown of what never ran


def test_init_refused_for_another_reason_raises_translated():
    with pytest.raises(NvmlCallError) as caught:
        GpuMonitor(FakeNvml([], init_error=pynvml.NVML_ERROR_NO_PERMISSION))
    err = caught.value
    assert str(err) == ("initialise NVML: Insufficient Permissions (nvmlInit: NVML error 4)")
    assert err.code == pynvml.NVML_ERROR_NO_PERMISSION
    assert err.gpu is None
    assert isinstance(err.__cause__, pynvml.NVMLError)


def test_readings_per_gpu():
    with GpuMonitor(two_gpus()) as gpus:
        assert gpus.state.available
        assert gpus.state.device_count == 2
        assert gpus.state.driver_version == "580.65.06"
        assert gpus.readings() == (
            GpuReading(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", 87, 40, 30 * GIB, 80 * GIB),
            GpuReading(1, "GPU-bbbb", "NVIDIA A100", 0, 0, 0, 80 * GIB),
        )


def test_values_a_gpu_does_not_report_read_as_none_not_zero():
    gpu = FakeGpu(fail={"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED})
    with GpuMonitor(FakeNvml([gpu])) as gpus:
        (reading,) = gpus.readings()
    assert reading.sm_percent is None
    assert reading.memory_io_percent is None
    assert reading.memory_total_bytes == 80 * GIB


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (
            pynvml.NVML_ERROR_GPU_IS_LOST,
            GpuLostError,
            "read memory GPU 1: GPU is lost (nvmlDeviceGetMemoryInfo: NVML error 15)",
        ),
        (
            pynvml.NVML_ERROR_TIMEOUT,
            NvmlCallError,
            "read memory GPU 1: Timeout (nvmlDeviceGetMemoryInfo: NVML error 10)",
        ),
    ],
)
def test_nvml_failures_are_translated_naming_the_gpu(code, error, message):
    nvml = two_gpus()
    nvml.gpus[1].fail["nvmlDeviceGetMemoryInfo"] = code
    with GpuMonitor(nvml) as gpus, pytest.raises(error) as caught:
        gpus.readings()
    assert type(caught.value) is error
    assert isinstance(caught.value, GpuError)
    assert isinstance(caught.value, IsolationError)
    assert str(caught.value) == message
    assert caught.value.gpu == 1
    assert isinstance(caught.value.__cause__, pynvml.NVMLError)


def test_processes_carry_pid_memory_and_latest_sm_sample():
    nvml = two_gpus()
    with GpuMonitor(nvml) as gpus:
        assert gpus.processes() == (
            GpuProcess(0, "GPU-aaaa", 4242, "compute", 20 * GIB, 70),
            GpuProcess(0, "GPU-aaaa", 4343, "compute", None, 10),
            GpuProcess(1, "GPU-bbbb", 77, "graphics", GIB, None),
        )
        # Only samples newer than those already read count on the next call.
        nvml.gpus[0].samples.append((4343, 300, 55))
        again = {p.pid: p.sm_percent for p in gpus.processes()}
    assert again == {4242: None, 4343: 55, 77: None}


def test_pids_by_gpu_for_freezing_batch_users():
    nvml = two_gpus()
    nvml.gpus.append(FakeGpu(uuid="GPU-idle"))
    with GpuMonitor(nvml) as gpus:
        assert gpus.pids_by_gpu() == {
            0: frozenset({4242, 4343}),
            1: frozenset({77}),
            2: frozenset(),
        }


def test_close_shuts_nvml_down_once():
    nvml = two_gpus()
    gpus = GpuMonitor(nvml)
    gpus.close()
    gpus.close()
    assert nvml.calls.count("nvmlShutdown") == 1
    assert gpus.readings() == ()


def _real_nvml_absent() -> str | None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return f"no real NVML here: {err}"
    pynvml.nvmlShutdown()
    return None


@pytest.mark.skipif(_real_nvml_absent() is not None, reason=str(_real_nvml_absent()))
def test_real_nvml_readings_are_sane():
    with GpuMonitor() as gpus:
        assert gpus.state.available
        assert gpus.state.device_count >= 1
        for r in gpus.readings():
            assert r.uuid is not None
            assert r.uuid.startswith(("GPU-", "MIG-"))
            assert r.memory_total_bytes is not None
            assert r.memory_total_bytes > GIB
            assert r.memory_used_bytes is not None
            assert 0 <= r.memory_used_bytes <= r.memory_total_bytes
            assert r.sm_percent is None or 0 <= r.sm_percent <= 100
        for p in gpus.processes():
            assert p.pid > 0
            assert 0 <= p.gpu_index < gpus.state.device_count
        assert set(gpus.pids_by_gpu()) == set(range(gpus.state.device_count))


def test_survey_isolates_a_failing_gpu_and_reads_the_others():
    nvml = two_gpus()
    nvml.gpus[0].fail["nvmlDeviceGetComputeRunningProcesses"] = pynvml.NVML_ERROR_GPU_IS_LOST
    nvml.gpus[1].minor = 7
    with GpuMonitor(nvml) as gpus:
        lost, fine = gpus.survey()
    assert lost.reading is None and lost.processes == () and lost.minor is None
    assert lost.error == (
        "list compute processes GPU 0: GPU is lost "
        "(nvmlDeviceGetComputeRunningProcesses: NVML error 15)"
    )
    assert fine.error is None and fine.minor == 7
    assert fine.reading is not None and fine.reading.uuid == "GPU-bbbb"
    assert [p.pid for p in fine.processes] == [77]


def test_mig_mode_reads_none_where_the_gpu_has_no_mig():
    nvml = FakeNvml([FakeGpu(), FakeGpu(mig=1), FakeGpu(mig=0)])
    with GpuMonitor(nvml) as gpus:
        assert [gpus.mig_mode(i) for i in range(3)] == [None, True, False]
