"""Budgets: the formula with its numbers, clamping, degrade, and no NaN/inf ever out."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qos.budget import LastGood, Resource, Terms, clamp_amount, from_terms, without_fresh_readings
from qos.decide import BrainState, decide
from qos.plan import CpusetCap, QuotaCap
from qos.samples import CpuReading, GpuReading, MemoryReading, PressureReading, Snapshot, clean
from qos.settings import QosSettings, ReclaimSettings
from qos.state import NodeCapacity
from tests.qos_builders import CAPACITY, GIB, node, snapshot

# The formula is checked with a fixed share kept back and no cold start or learned rise.
SETTINGS = QosSettings.model_validate(
    {
        "margin": {"initial_fraction": 0.1, "min_fraction": 0.05},
        "reclaim": {"cpu_max_fraction": 0.9, "memory_max_fraction": 0.9},
        "predictor": {
            "cold_start_cpu_fraction": 0,
            "cold_start_memory_fraction": 0,
            "window_seconds": 300,
            "percentile": 0.95,
        },
    }
)


def test_the_reason_writes_out_the_formula_with_its_numbers():
    plan, _ = decide(snapshot(10.0), BrainState(), SETTINGS, 10.0)
    cpu = plan.budgets.cpu
    # 8000 x 0.9 - system 500 - online 2000 - margin 0.1 x 8000 (the PSI is below target,
    # so the first step shrinks it by at most 0.002) = 3900..3916
    assert 3900 <= cpu.amount <= 3916
    for part in ("colocd.io/batch-cpu", "capacity 8000m x 0.9", "system 500m", "online 2000m"):
        assert part in cpu.reason
    assert "margin" in cpu.reason and "below target" in cpu.reason
    mem = plan.budgets.memory
    assert mem.amount == math.floor(16 * GIB * 0.9 - 1 * GIB - 4 * GIB)
    assert "online 4.00Gi (with its page cache, current 4.00Gi)" in mem.reason, mem.reason


MIB = 1024**2
# A real node: kubelet keeps 1 core and 2 GiB for node daemons (kube-reserved +
# system-reserved) plus its 100 MiB eviction threshold outside allocatable.
SET_ASIDE = NodeCapacity(
    8000, 16 * GIB, cpu_set_aside_milli=1000, memory_set_aside_bytes=2 * GIB + 100 * MIB
)


def test_what_kubelet_keeps_outside_allocatable_is_not_counted_twice():
    both = {"system": 1400.0, "system_ws": 3.0 * GIB}
    plain, _ = decide(snapshot(10.0, **both), BrainState(), SETTINGS, 10.0)
    real, _ = decide(
        snapshot(10.0, state=node(capacity=SET_ASIDE), **both), BrainState(), SETTINGS, 10.0
    )
    cpu, mem = real.budgets.cpu, real.budgets.memory
    # Only system use beyond kubelet's 1 core competes with pods: 1400m - 1000m.
    assert cpu.amount == plain.budgets.cpu.amount + 1000
    assert (
        "system 400m (use 1400m (current 1400m) less 1000m kubelet already keeps outside "
        "allocatable)" in cpu.reason
    ), cpu.reason
    # Memory: 3 GiB used less the 2 GiB kept for daemons; the eviction threshold stays free.
    assert mem.amount == math.floor(16 * GIB * 0.9 - 1 * GIB - 4 * GIB)
    assert mem.amount == plain.budgets.memory.amount + 2 * GIB
    assert (
        "system 1.00Gi (use 3.00Gi (current 3.00Gi) less 2.00Gi kubelet already keeps outside "
        "allocatable (2.10Gi less its 100Mi eviction threshold, kept free))" in mem.reason
    ), mem.reason


def test_system_use_within_kubelets_reservation_costs_batch_nothing():
    plan, _ = decide(
        snapshot(10.0, state=node(capacity=SET_ASIDE), system=600.0), BrainState(), SETTINGS, 10.0
    )
    assert "system 0m (use 600m (current 600m) less 1000m kubelet" in plan.budgets.cpu.reason
    assert plan.budgets.cpu.terms is not None and plan.budgets.cpu.terms.system == 0.0


def test_the_configured_reservation_is_the_daemons_total_with_kubelets_share_in_it():
    s = SETTINGS.model_copy(
        update={"reclaim": SETTINGS.reclaim.model_copy(update={"reserved_system_cpu_milli": 1500})}
    )
    plan, _ = decide(
        snapshot(10.0, state=node(capacity=SET_ASIDE), system=600.0), BrainState(), s, 10.0
    )
    why = plan.budgets.cpu.reason
    assert "system 500m (reserved 1500m (use 600m) less 1000m kubelet already keeps" in why, why
    unread, _ = decide(
        snapshot(10.0, state=node(capacity=SET_ASIDE), system=None), BrainState(), s, 10.0
    )
    assert (
        "system 500m (use not read; reserved 1500m less 1000m kubelet" in unread.budgets.cpu.reason
    )


def test_kubelets_eviction_threshold_alone_is_not_room_for_node_daemons():
    # A node with no kube/system-reserved: capacity - allocatable is the eviction threshold.
    kind = NodeCapacity(8000, 16 * GIB, memory_set_aside_bytes=100 * MIB)
    plain, _ = decide(snapshot(10.0), BrainState(), SETTINGS, 10.0)
    plan, _ = decide(snapshot(10.0, state=node(capacity=kind)), BrainState(), SETTINGS, 10.0)
    assert plan.budgets.memory.amount == plain.budgets.memory.amount
    assert "less 0Mi kubelet already keeps outside allocatable (100Mi less its 100Mi" in (
        plan.budgets.memory.reason
    )
    # A larger threshold (policy reclaim.kubeletEvictionMemory) credits less.
    s = SETTINGS.model_copy(
        update={
            "reclaim": SETTINGS.reclaim.model_copy(
                update={"kubelet_eviction_memory_bytes": 600 * MIB}
            )
        }
    )
    real, _ = decide(snapshot(10.0, state=node(capacity=SET_ASIDE)), BrainState(), s, 10.0)
    assert "less 1.51Gi kubelet already keeps outside allocatable" in real.budgets.memory.reason


@pytest.mark.parametrize(
    ("raw", "capacity", "expected"),
    [
        (-5.0, 100, 0),
        (50.9, 100, 50),
        (150.0, 100, 100),
        (math.nan, 100, 0),
        (math.inf, 100, 0),
        (-math.inf, 100, 0),
        (10.0, 0, 0),
    ],
)
def test_clamp_amount(raw, capacity, expected):
    assert clamp_amount(raw, capacity) == expected


def test_a_negative_formula_is_clamped_to_zero_and_says_so():
    terms = Terms(capacity=1000, max_fraction=0.9, system=500, online=800, margin=100)
    b = from_terms(Resource.CPU, 1000, terms)
    assert b.amount == 0 and "clamped" in b.reason


def test_degrade_holds_until_the_limit_then_decays_linearly_to_zero():
    r = ReclaimSettings(stale_after_seconds=10, degrade_seconds=20)
    last = LastGood(4000, at=100.0)

    def amount(now):
        return without_fresh_readings(Resource.CPU, 8000, last, now, r)

    assert amount(110.0).amount == 4000 and not amount(110.0).degraded
    assert amount(120.0).amount == 2000 and amount(120.0).degraded
    assert "degraded" in amount(120.0).reason and "20s old" in amount(120.0).reason
    assert amount(130.0).amount == 0
    assert amount(1e9).amount == 0
    at_once = ReclaimSettings(stale_after_seconds=10, degrade_seconds=0)
    assert without_fresh_readings(Resource.CPU, 8000, last, 110.5, at_once).amount == 0


def test_decide_degrades_at_the_stated_staleness():
    s = QosSettings.model_validate({"reclaim": {"stale_after_seconds": 5, "degrade_seconds": 10}})
    plan, state = decide(snapshot(0.0), BrainState(), s, 0.0)
    fresh = plan.budgets.cpu.amount
    assert fresh > 0 and not plan.degraded
    stale = snapshot(0.0)  # the same readings, never refreshed
    plan, state = decide(stale, state, s, 5.0)
    assert plan.budgets.cpu.amount == fresh and not plan.budgets.cpu.degraded
    plan, state = decide(stale, state, s, 10.0)
    assert plan.budgets.cpu.degraded
    assert plan.budgets.cpu.amount == pytest.approx(fresh / 2, abs=1)
    assert any("degraded" in r for r in plan.degraded)
    plan, _ = decide(stale._replace(cpu=None, memory=None), state, s, 15.0)
    assert plan.budgets.cpu.amount == 0 and plan.budgets.memory.amount == 0


def test_nothing_is_offered_before_online_use_was_ever_read():
    plan, _ = decide(snapshot(1.0, online=None, online_ws=None), BrainState(), SETTINGS, 1.0)
    assert plan.budgets.cpu.amount == 0 and plan.budgets.memory.amount == 0
    assert "never read" in plan.budgets.cpu.reason


def test_a_missing_current_reading_counts_as_the_window_peak():
    state = BrainState()
    for t, online in enumerate([1000.0, 5000.0, 1000.0]):
        _, state = decide(snapshot(float(t), online=online), state, SETTINGS, float(t))
    plan, _ = decide(snapshot(3.0, online=None), state, SETTINGS, 3.0)
    # The peak 5000m plus the rise 1000m -> 5000m seen, x 1.5: 11000m.
    why = plan.budgets.cpu.reason
    assert "online 11000m (p95 of 5 min (3 samples), current reading missing + burst 6000m" in why


weird = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e12, 1e12),
    st.integers(-(10**15), 10**15),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(weird, weird, weird, weird, weird, weird, weird, weird, weird),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 64_000),
    st.integers(0, 2**40),
    st.integers(0, 4),
    st.tuples(st.integers(0, 64_000), st.integers(0, 2**40)),  # what kubelet keeps outside
)
def test_budgets_stay_in_range_whatever_the_readings(rows, cpu_cap, mem_cap, gpus, aside):
    capacity = NodeCapacity(
        cpu_cap, mem_cap, gpus, cpu_set_aside_milli=aside[0], memory_set_aside_bytes=aside[1]
    )
    state = BrainState()
    for i, (online, system, batch, psi, ows, sws, nws, gpu_use, gpu_mem) in enumerate(rows):
        now = float(i)
        snap = Snapshot(
            node=node(capacity=capacity),
            cpu=CpuReading(
                now,
                node_used_milli=batch,
                system_used_milli=system,
                online_used_milli=online,
                batch_used_milli=batch,
            ),
            memory=MemoryReading(
                now,
                node_working_set_bytes=nws,
                system_working_set_bytes=sws,
                online_memory_bytes=ows,
            ),
            cpu_pressure=PressureReading(now, some_avg10=psi),
            memory_pressure=PressureReading(now, some_avg10=psi),
            gpu=GpuReading(
                now,
                devices=gpus,
                online_used_hundredths=gpu_use,
                online_memory_bytes=gpu_mem,
                memory_total_bytes=80 * GIB,
            ),
        )
        plan, state = decide(snap, state, QosSettings(), now)
        for b in plan.budgets.all():
            assert isinstance(b.amount, int)
            assert 0 <= b.amount <= b.capacity
            assert "nan" not in b.reason and "inf" not in b.reason
        for e in plan.extended_resources:
            assert isinstance(e.value, int) and e.value >= 0
        assert 0.0 <= plan.margin.fraction <= 0.5
        cap = plan.batch_tier.cpu_cap
        if isinstance(cap, CpusetCap):
            assert len(cap.cpus) >= 1
        else:
            assert isinstance(cap, QuotaCap) and cap.millicores >= 1
        mem = plan.batch_tier.memory
        assert mem is not None
        if plan.budgets.memory.degraded:  # stale: the limits are left where they are
            assert mem.high_bytes is None and mem.max_bytes is None
        else:
            assert mem.high_bytes is not None and 0 <= mem.high_bytes <= capacity.memory_bytes
            assert mem.max_bytes is None or mem.high_bytes <= mem.max_bytes <= capacity.memory_bytes


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, -math.inf, 1e300])
def test_a_bad_reading_counts_as_missing_not_as_zero(bad):
    state = BrainState()
    _, state = decide(snapshot(0.0, online=6000.0), state, SETTINGS, 0.0)
    plan, _ = decide(snapshot(1.0, online=bad), state, SETTINGS, 1.0)
    # 0 would free 6000m for batch; missing keeps the window's peak of 6000m.
    assert plan.budgets.cpu.amount < CAPACITY.cpu_milli * 0.9 - 500 - 6000 + 1


@pytest.mark.parametrize(
    ("value", "upper", "expected"),
    [(2100.0, 2000.0, 2000.0), (4001.0, 2000.0, None), (5.0, None, 5.0), (-0.5, 10.0, None)],
)
def test_clean_cuts_a_slight_overshoot_and_drops_absurd_values(value, upper, expected):
    assert clean(value, upper) == expected


def gpu_snapshot(at, **gpu):
    return snapshot(at)._replace(gpu=GpuReading(at, **gpu))


def test_gpu_budget_in_hundredths_bounded_by_gpu_memory():
    snap = gpu_snapshot(
        1.0,
        devices=2,
        online_used_hundredths=50.0,
        online_memory_bytes=20 * GIB,
        memory_total_bytes=80 * GIB,
    )
    plan, _ = decide(snap, BrainState(), QosSettings(), 1.0)
    gpu = plan.budgets.gpu
    # time: 200 x 0.9 - 50 - 20 (reserve 10 %) = 110; memory: 80 x 0.9 - 20 - 8 = 44 GiB
    # free of 80 -> 110 hundredths as well; the smaller wins.
    assert gpu is not None and gpu.amount == 110
    snap = snap._replace(gpu=snap.gpu._replace(online_memory_bytes=60 * GIB))
    plan, _ = decide(snap, BrainState(), QosSettings(), 1.0)
    assert plan.budgets.gpu.amount == 10 and "capped at 10" in plan.budgets.gpu.reason
    names = [e.name for e in plan.extended_resources]
    assert "colocd.io/batch-gpu" in names


def test_no_gpu_or_gpu_reclaim_off_publishes_no_batch_gpu():
    plan, _ = decide(snapshot(1.0), BrainState(), QosSettings(), 1.0)
    assert plan.budgets.gpu is None
    off = QosSettings.model_validate({"gpu": {"enabled": False}})
    plan, _ = decide(
        gpu_snapshot(1.0, devices=1, online_used_hundredths=0.0), BrainState(), off, 1.0
    )
    assert plan.budgets.gpu is None
    assert "colocd.io/batch-gpu" not in [e.name for e in plan.extended_resources]
