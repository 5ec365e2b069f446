"""qos.gpu through decide(): per-GPU budgets (predictor, PID margin, memory peak), and batch
frozen while online surges on its GPU, thawed with hysteresis, evicted when frozen too long."""

from __future__ import annotations

from dataclasses import replace

from qos.decide import BrainState, decide
from qos.samples import GpuDeviceReading, GpuReading
from qos.settings import QosSettings
from tests.qos_builders import node, pod, snapshot

GIB = 1024**3
TOTAL = 80 * GIB
NODE = node(pod("web", cpu="1", memory=GIB), pod("job", batch_cpu=500), pod("other", batch_cpu=500))


def device(at: float, index: int = 0, online: float | None = 10.0, **kw) -> GpuDeviceReading:
    values = {
        "uuid": f"GPU-{index}",
        "online_percent": online,
        "batch_percent": 0.0,
        "online_memory_bytes": 0.0,
        "batch_memory_bytes": 0.0,
        "memory_total_bytes": float(TOTAL),
        "batch_pods": (("default/job", None),) if index == 0 else (),
    }
    return GpuDeviceReading(at, index, **{**values, **kw})


def gpu_snapshot(at: float, *devices: GpuDeviceReading):
    return snapshot(at, state=NODE)._replace(
        gpu=GpuReading(at, devices=len(devices), per_device=devices)
    )


def run(steps, settings: QosSettings | None = None, state: BrainState | None = None):
    settings = settings or QosSettings()
    state = state or BrainState()
    plans = []
    for at, devices in steps:
        plan, state = decide(gpu_snapshot(at, *devices), state, settings, at)
        plans.append(plan)
    return plans, state


def test_each_gpu_offers_what_online_leaves_and_the_node_publishes_the_sum() -> None:
    (plan,), _ = run([(1.0, [device(1.0, 0, online=30.0), device(1.0, 1, online=0.0)])])
    # 100 x 0.9 - 30 - 10 (the margin starts at its floor, the reserve) = 50; idle GPU 80.
    assert [d.amount for d in plan.gpu.devices] == [50, 80]
    assert plan.budgets.gpu.amount == 130 and plan.budgets.gpu.capacity == 200
    assert [(e.name, e.value) for e in plan.extended_resources][-1] == ("colocd.io/batch-gpu", 130)


def test_the_margin_is_pid_sized_on_how_busy_the_gpu_is_while_online_runs() -> None:
    busy = [(float(t), [device(float(t), online=40.0, batch_percent=60.0)]) for t in range(1, 6)]
    plans, _ = run(busy)
    margins = [p.gpu.devices[0].margin_fraction for p in plans]
    assert margins[0] > 0.1 and margins == sorted(margins)  # busy 100 % > 90 %: grows
    assert "GPU 0 busy 100 above target 90" in plans[-1].gpu.devices[0].reason
    assert plans[-1].gpu.devices[0].amount < plans[0].gpu.devices[0].amount


def test_batch_is_never_offered_gpu_memory_online_used_within_the_window() -> None:
    steps = [
        (1.0, [device(1.0, online=0.0, online_memory_bytes=60.0 * GIB)]),
        (2.0, [device(2.0, online=0.0, online_memory_bytes=1.0 * GIB)]),
    ]
    plans, _ = run(steps)
    # 80Gi x (0.9 - 0.1) - 60Gi peak = 4Gi = 5 % of the GPU, on both ticks.
    assert [p.gpu.devices[0].amount for p in plans] == [5, 5]
    assert "online peak 60.00Gi" in plans[1].gpu.devices[0].reason


def test_surge_freezes_batch_only_and_thaws_after_the_hysteresis_holds() -> None:
    bad = (("default/job", None), ("default/web", None))  # web is online: never frozen
    steps = [
        (1.0, [device(1.0, online=85.0, batch_pods=bad)]),
        (2.0, [device(2.0, online=65.0, batch_pods=bad)]),  # in the band 60..80: held
        (3.0, [device(3.0, online=50.0, batch_pods=bad)]),  # calm from here...
        (12.0, [device(12.0, online=50.0, batch_pods=bad)]),
        (13.5, [device(13.5, online=50.0, batch_pods=bad)]),  # ...10 s later: thawed
    ]
    plans, state = run(steps)
    assert [f.pod for f in plans[0].gpu.frozen] == ["default/job"]
    assert plans[0].gpu.frozen[0].new and "online SM 85% >= 80%" in plans[0].gpu.frozen[0].reason
    assert "default/web on surged GPU 0 is not batch: never frozen" in plans[0].gpu.notes
    assert [len(p.gpu.frozen) for p in plans] == [1, 1, 1, 1, 0]
    assert not plans[1].gpu.frozen[0].new
    (thaw,) = plans[4].gpu.thawed
    assert thaw.pod == "default/job" and "below 60%" in thaw.reason and "for 10s" in thaw.reason
    assert not state.gpus.frozen


def test_online_memory_past_its_threshold_surges_the_gpu_too() -> None:
    (plan,), _ = run([(1.0, [device(1.0, online=5.0, online_memory_bytes=0.9 * TOTAL)])])
    assert [f.pod for f in plan.gpu.frozen] == ["default/job"]
    assert "online memory 90.0% >= 85.0%" in plan.gpu.frozen[0].reason


def test_a_frozen_pod_stays_frozen_while_its_gpu_cannot_be_read() -> None:
    plans, _ = run(
        [
            (1.0, [device(1.0, online=95.0)]),
            (2.0, [GpuDeviceReading(2.0, 0, uuid="GPU-0", error="read memory GPU 0: GPU is lost")]),
        ]
    )
    assert [f.pod for f in plans[1].gpu.frozen] == ["default/job"]
    assert plans[1].gpu.devices[0].amount == 0 and "GPU is lost" in plans[1].gpu.devices[0].reason


def test_a_pod_created_again_under_a_frozen_ones_name_is_not_held_frozen() -> None:
    """default/job was frozen; a pod of the same name but another UID (deleted and created
    again) is a new pod: it is neither held frozen nor 'thawed' off a GPU it never used,
    and frozen afresh (a new clock) when it does run on the surged GPU."""
    _, state = run([(1.0, [device(1.0, online=95.0)])])
    (old,) = state.gpus.frozen.values()
    assert old.uid == "uid-job"
    gone = replace(old, uid="uid-of-the-deleted-job", since=0.0)
    state = replace(state, gpus=replace(state.gpus, frozen={"default/job": gone}))
    (plan,), after = run([(2.0, [device(2.0, online=95.0, batch_pods=())])], state=state)
    assert plan.gpu.frozen == () and plan.gpu.thawed == () and not after.gpus.frozen
    (plan,), after = run([(3.0, [device(3.0, online=95.0)])], state=state)
    (f,) = plan.gpu.frozen
    assert f.new and f.reason.startswith("freeze default/job")
    assert after.gpus.frozen["default/job"].since == 3.0


def test_frozen_past_the_limit_is_evicted_once_and_dry_run_is_honoured() -> None:
    settings = QosSettings.model_validate({"gpu": {"max_frozen_seconds": 30}})
    steps = [(float(t), [device(float(t), online=95.0)]) for t in (1, 20, 31, 40)]
    plans, _ = run(steps, settings)
    assert [len(p.evictions) for p in plans] == [0, 0, 1, 0]
    assert "frozen on the GPU for 30s (limit 30s)" in plans[2].evictions[0].reason
    dry = QosSettings.model_validate(
        {"gpu": {"max_frozen_seconds": 0}, "eviction": {"dry_run": True}}
    )
    (plan,), _ = run(steps[:1], dry)
    assert plan.evictions[0].dry_run and plan.evictions[0].reason.startswith("dry-run")


def test_no_per_device_reading_no_gpu_plan_and_no_batch_gpu() -> None:
    plan, _ = decide(snapshot(1.0, state=NODE), BrainState(), QosSettings(), 1.0)
    assert plan.gpu is None and plan.budgets.gpu is None


def test_stale_gpu_readings_degrade_the_budget() -> None:
    settings = QosSettings()
    (first,), state = run([(1.0, [device(1.0, online=0.0)])], settings)
    old = gpu_snapshot(1.0, device(1.0, online=0.0))
    plan, _ = decide(old, state, settings, 40.0)
    assert first.budgets.gpu.amount == 80
    assert plan.budgets.gpu.degraded and plan.budgets.gpu.amount < 80
