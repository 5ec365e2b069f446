"""decide(): what the plan asks of cgroups for each tier, and last-resort evictions."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from qos.cpus import format_cpus
from qos.decide import BrainState, cpu_mechanism, decide
from qos.limits import LIMIT_STEP_BYTES
from qos.plan import CpusetCap, QuotaCap
from qos.samples import LatencyReading, ThrottleReading
from qos.settings import CpuMechanism, QosSettings
from tests.qos_builders import GIB, node, pod, snapshot

S = QosSettings()
# The budget arithmetic below is checked with a fixed share kept back and no cold start:
# 90 % of the node planned, a 25 % margin at start, the predictor's raw window level.
FIXED = QosSettings.model_validate(
    {
        "reclaim": {"cpu_max_fraction": 0.9, "memory_max_fraction": 0.9},
        "margin": {"min_fraction": 0.05, "initial_fraction": 0.25},
        "predictor": {"cold_start_cpu_fraction": 0, "cold_start_memory_fraction": 0},
    }
)
CPUSET = QosSettings.model_validate({"cpu": {"mechanism": "cpuset"}})
PODS = (
    pod("payments", cpu="2", memory=2 * GIB, guaranteed=True, tier="dedicated"),
    pod("web", cpu="500m", memory=1 * GIB),
    pod("spark-1", batch_cpu=2000, batch_memory=4 * GIB, priority=100),
    pod("spark-2", batch_cpu=1000, batch_memory=2 * GIB, priority=5),
    pod("scratch"),  # plain BestEffort: batch, with no batch-* requests
)


def test_decide_is_pure_same_inputs_same_plan_and_input_state_untouched():
    snap = snapshot(5.0, state=node(*PODS))
    state = BrainState()
    before = copy.deepcopy(state)
    a = decide(snap, state, S, 5.0)
    b = decide(snap, state, S, 5.0)
    assert a == b
    assert state == before


def test_dedicated_pods_get_exclusive_cpus_that_batch_never_shares():
    plan, state = decide(snapshot(1.0, state=node(*PODS)), BrainState(), CPUSET, 1.0)
    (dedicated,) = plan.dedicated_pods
    assert dedicated.pod == "default/payments" and dedicated.cpus == (6, 7)
    assert plan.shared_cpus is not None and plan.shared_cpus.cpus == (0, 1, 2, 3, 4, 5)
    cap = plan.batch_tier.cpu_cap
    assert isinstance(cap, CpusetCap)
    assert not set(cap.cpus) & set(dedicated.cpus)
    assert "exclusive 6-7" in dedicated.reason
    # They keep their cores on the next tick even when the pod list changes.
    more = node(*PODS, pod("ledger", cpu="1", memory=GIB, guaranteed=True, tier="dedicated"))
    plan, _ = decide(snapshot(2.0, state=more), state, CPUSET, 2.0)
    cpus = {d.pod: d.cpus for d in plan.dedicated_pods}
    assert cpus == {"default/payments": (6, 7), "default/ledger": (5,)}


def test_a_dedicated_pod_without_enough_free_cpus_is_noted_not_squeezed():
    big = pod("huge", cpu="8", memory=GIB, guaranteed=True, tier="dedicated")
    plan, _ = decide(snapshot(1.0, state=node(big)), BrainState(), S, 1.0)
    assert plan.dedicated_pods == () and plan.shared_cpus is None
    assert any("huge needs 8 exclusive CPUs" in n for n in plan.notes)


def test_batch_cpuset_holds_the_whole_cpus_of_the_budget():
    plan, _ = decide(snapshot(1.0, state=node(*PODS)), BrainState(), CPUSET, 1.0)
    budget = plan.budgets.cpu.amount
    cap = plan.batch_tier.cpu_cap
    assert isinstance(cap, CpusetCap)
    assert len(cap.cpus) == max(1, budget // 1000)
    assert cap.cpus == plan.shared_cpus.cpus[-len(cap.cpus) :]
    assert format_cpus(cap.cpus) in cap.reason


@pytest.mark.parametrize(
    ("mechanism", "kind"),
    [("quota", QuotaCap), ("idle-only", type(None)), ("cpuset", CpusetCap)],
)
def test_cpu_mechanism_choice(mechanism, kind):
    s = QosSettings.model_validate({"cpu": {"mechanism": mechanism}})
    plan, _ = decide(snapshot(1.0), BrainState(), s, 1.0)
    assert isinstance(plan.batch_tier.cpu_cap, kind)
    assert plan.batch_tier.cpu_idle is not None and plan.batch_tier.cpu_idle.enabled
    if mechanism == "quota":
        assert plan.batch_tier.cpu_cap.millicores == max(100, plan.budgets.cpu.amount)


@pytest.mark.parametrize("idle_setting", [True, False])
def test_auto_mechanism_confines_batch_by_cpuset(idle_setting):
    # bench_reaction: with batch pods idle (or not), a cpuset hurt online's wake-ups least.
    s = QosSettings.model_validate({"cpu": {"idle": idle_setting}})
    assert s.cpu.mechanism is CpuMechanism.AUTO
    assert cpu_mechanism(s) is CpuMechanism.CPUSET
    plan, _ = decide(snapshot(1.0), BrainState(), s, 1.0)
    assert isinstance(plan.batch_tier.cpu_cap, CpusetCap)
    assert "auto: keeping batch off some CPUs" in plan.batch_tier.cpu_cap.reason
    assert (plan.batch_tier.cpu_idle is not None) is idle_setting


def test_idle_only_says_it_leaves_batch_uncapped():
    s = QosSettings.model_validate({"cpu": {"mechanism": "idle-only"}})
    plan, _ = decide(snapshot(1.0), BrainState(), s, 1.0)
    assert plan.batch_tier.cpu_cap is None
    assert "no CPU cap (idle-only)" in plan.batch_tier.cpu_idle.reason


def test_cpu_idle_off_leaves_it_alone():
    s = QosSettings.model_validate({"cpu": {"idle": False}})
    plan, _ = decide(snapshot(1.0), BrainState(), s, 1.0)
    assert plan.batch_tier.cpu_idle is None


def test_online_pods_get_memory_min_and_low_from_their_requests():
    plan, _ = decide(snapshot(1.0, state=node(*PODS)), BrainState(), S, 1.0)
    got = {p.pod: (p.memory_min_bytes, p.memory_low_bytes) for p in plan.online_pods}
    assert got == {"default/payments": (GIB, 2 * GIB), "default/web": (GIB // 2, GIB)}


def test_batch_pods_get_limits_from_their_batch_requests_with_high_below_max():
    plan, _ = decide(snapshot(1.0, state=node(*PODS)), BrainState(), S, 1.0)
    by_pod = {p.pod: p for p in plan.batch_pods}
    assert set(by_pod) == {"default/spark-1", "default/spark-2"}
    spark = by_pod["default/spark-1"]
    assert spark.cpu_quota_milli == 2000
    assert spark.memory is not None
    assert spark.memory.max_bytes == 4 * GIB
    assert spark.memory.high_bytes == int(4 * GIB * 0.9)
    assert "colocd.io/batch-memory" in spark.reason


def test_batch_tier_memory_high_is_the_budget_below_a_hard_max():
    plan, _ = decide(snapshot(1.0), BrainState(), FIXED, 1.0)
    mem = plan.batch_tier.memory
    amount = plan.budgets.memory.amount
    assert amount - LIMIT_STEP_BYTES < mem.high_bytes <= amount  # rounded down to a step
    assert mem.high_bytes % LIMIT_STEP_BYTES == 0
    assert mem.max_bytes == 16 * GIB - 1 * GIB - 4 * GIB
    assert mem.high_bytes < mem.max_bytes


def test_batch_tier_memory_limits_hold_still_while_use_drifts_by_kib():
    """A quiet node's memory moves by some KiB a tick: the limits, in whole steps rounded
    down (towards online), stay where they are, so nothing is rewritten."""
    state = BrainState()
    limits = []
    for i, drift in enumerate((0, 40 << 10, -10 << 10, 90 << 10, -30 << 10)):
        online = 4.0 * GIB + LIMIT_STEP_BYTES // 2 + drift
        plan, state = decide(snapshot(1.0 + i, online_ws=online), state, FIXED, 1.0 + i)
        mem = plan.batch_tier.memory
        limits.append((mem.high_bytes, mem.max_bytes))
        assert mem.max_bytes <= 11 * GIB - online + 4.0 * GIB  # never above the line
    assert len(set(limits)) == 1, limits
    assert "both rounded down to 2Mi steps" in plan.batch_tier.memory.reason


def test_extended_resources_are_the_budgets_with_their_reasons():
    plan, _ = decide(snapshot(1.0), BrainState(), S, 1.0)
    names = {e.name: e for e in plan.extended_resources}
    assert set(names) == {"colocd.io/batch-cpu", "colocd.io/batch-memory"}
    assert names["colocd.io/batch-cpu"].value == plan.budgets.cpu.amount
    assert names["colocd.io/batch-cpu"].reason == plan.budgets.cpu.reason


def test_memory_qos_off_leaves_memory_alone():
    s = QosSettings.model_validate({"memory": {"enabled": False}})
    plan, _ = decide(snapshot(1.0, state=node(*PODS)), BrainState(), s, 1.0)
    assert plan.batch_tier.memory is None and plan.online_pods == ()
    assert all(p.memory is None for p in plan.batch_pods)


# --- evictions -----------------------------------------------------------------------

EVICT = QosSettings.model_validate(
    {
        "eviction": {
            "sustained_seconds": 5,
            "cooldown_seconds": 10,
            "max_evictions": 2,
            "rate_window_seconds": 100,
        }
    }
)


def run(snaps, settings=EVICT):
    state, plans = BrainState(), []
    for t, snap in snaps:
        plan, state = decide(snap, state, settings, t)
        plans.append(plan)
    return plans


def pressured(t, psi=30.0, **kw):
    return snapshot(t, state=node(*PODS), memory_psi=psi, **kw)


def evicted(plans):
    return [(p.now, e.pod) for p in plans for e in p.evictions]


def test_sustained_memory_pressure_evicts_the_lowest_priority_batch_pod_first():
    plans = run((float(t), pressured(float(t))) for t in range(0, 30))
    got = evicted(plans)
    assert got[0] == (5.0, "default/scratch")  # priority 0 (none) < 5 < 100
    assert got[1] == (15.0, "default/spark-2")  # after the 10 s cool-down
    assert len(got) == 2  # rate limit: 2 per 100 s
    assert any("rate limit" in n for n in plans[-1].notes)
    assert "node memory PSI some 30.0%" in plans[5].evictions[0].reason


def test_pressure_must_be_sustained_and_hysteresis_keeps_it_on():
    # 30 % then 9 % (below 10, above 10 - 2): still pressured, eviction at t=5.
    snaps = [(float(t), pressured(float(t), psi=30.0 if t < 2 else 9.0)) for t in range(8)]
    assert evicted(run(snaps))[0][0] == 5.0
    # Dropping below threshold - hysteresis resets the clock: no eviction.
    snaps = [(float(t), pressured(float(t), psi=30.0 if t % 4 else 5.0)) for t in range(12)]
    assert evicted(run(snaps)) == []


def test_dry_run_reports_evictions_without_executing_them():
    s = EVICT.model_copy(update={"eviction": EVICT.eviction.model_copy(update={"dry_run": True})})
    plans = run(((float(t), pressured(float(t))) for t in range(8)), settings=s)
    (eviction,) = plans[5].evictions
    assert eviction.dry_run and eviction.reason.startswith("dry-run: would evict")


def test_disabled_eviction_plans_none():
    s = EVICT.model_copy(update={"eviction": EVICT.eviction.model_copy(update={"enabled": False})})
    assert evicted(run(((float(t), pressured(float(t))) for t in range(20)), settings=s)) == []


def test_stale_or_missing_readings_never_evict():
    # Pressure read once, then no fresh readings for a minute: the budget degrades to 0,
    # which must neither count as memory pressure nor as CPU starvation.
    first = pressured(0.0, psi=30.0)
    plans = run([(0.0, first)] + [(float(t), first) for t in range(1, 90)])
    assert plans[-1].budgets.cpu.amount == 0 and plans[-1].budgets.cpu.degraded
    assert evicted(plans) == []


def test_stale_memory_readings_never_lower_the_batch_memory_limits():
    # Issue 11: stale readings decayed the budget to 0 and colocd wrote memory.max 0 on v1.
    # Stale inputs stop new offers (published batch-memory decays to 0); the limits stay.
    first = pressured(0.0)
    plans = run([(0.0, first)] + [(float(t), first) for t in range(1, 90)])
    assert plans[0].batch_tier.memory is not None and plans[0].batch_tier.memory.high_bytes
    last = plans[-1]
    assert last.budgets.memory.degraded and last.budgets.memory.amount == 0
    assert next(e.value for e in last.extended_resources if "memory" in e.name) == 0
    mem = last.batch_tier.memory
    assert mem is not None and (mem.high_bytes, mem.max_bytes) == (None, None)
    assert "left alone" in mem.reason


def test_sustained_cpu_starvation_evicts():
    s = QosSettings.model_validate(
        {"eviction": {"starvation_seconds": 3, "starvation_fraction": 0.6}}
    )
    # Online uses nearly everything: batch-cpu 0 < 0.6 x 3000m requested.
    snaps = [(float(t), snapshot(float(t), state=node(*PODS), online=7000.0)) for t in range(6)]
    plans = run(snaps, settings=s)
    got = evicted(plans)
    assert got and got[0][0] == 3.0
    assert "batch starved" in plans[3].evictions[0].reason


def test_a_nearly_full_node_counts_as_memory_pressure_too():
    snaps = [
        (float(t), snapshot(float(t), state=node(*PODS), node_ws=15.5 * GIB)) for t in range(7)
    ]
    plans = run(snaps)
    assert evicted(plans)[0][0] == 5.0
    assert "node working set 96.9% >= 95.0%" in plans[5].evictions[0].reason


def test_starvation_measures_batch_demand_when_it_is_read():
    from qos.samples import BatchDemand

    s = FIXED.model_copy(
        update={"eviction": FIXED.eviction.model_copy(update={"starvation_seconds": 2})}
    )

    # Budget ~ 8000 x 0.9 - 500 - (2000 + 2000 dedicated) - 2000 margin = 700m: above
    # 0.6 x 1000m demanded, below 0.6 x 3000m requested by the pods.
    def snaps(demand):
        for t in range(5):
            snap = snapshot(float(t), state=node(*PODS), online=2000.0)
            yield float(t), snap._replace(batch_demand=BatchDemand(float(t), demand))

    assert evicted(run(snaps(1000.0), settings=s)) == []
    plans = run(snaps(9000.0), settings=s)
    assert evicted(plans) and "9000m demanded" in plans[2].evictions[0].reason


@pytest.mark.parametrize(
    ("settings", "reading", "name"),
    [
        (
            {"margin": {"indicator": "cfs_throttled_ratio"}},
            {"throttling": ThrottleReading(1.0, throttled_ratio=0.4)},
            "online CFS throttled ratio 0.4 above target 0.05",
        ),
        (
            {"margin": {"indicator": "latency", "target": 0.02}},
            {"latency": LatencyReading(1.0, value=0.01)},
            "online latency 0.01 below target 0.02",
        ),
        ({}, {"cpu_pressure": None}, "online CPU PSI some avg10 not read"),
    ],
)
def test_the_configured_indicator_drives_the_margin(settings, reading, name):
    s = QosSettings.model_validate(settings)
    plan, _ = decide(snapshot(1.0)._replace(**reading), BrainState(), s, 1.0)
    assert name in plan.margin.reason


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_count_for_nothing(phase):
    """A completed Job's pod stays bound to the node: it is no batch demand (no starvation
    eviction of the running pods), and a finished dedicated pod holds no exclusive CPUs."""
    s = QosSettings.model_validate(
        {
            "eviction": {"starvation_seconds": 3, "starvation_fraction": 0.6},
            "cpu": {"mechanism": "cpuset"},
        }
    )
    running = pod("web", cpu="500m", memory=GIB)
    done = [
        dataclasses.replace(p, phase=phase)
        for p in (
            pod("job-1", batch_cpu=3000, batch_memory=GIB),
            pod("job-2", batch_cpu=2000, batch_memory=GIB),
            pod("payments", cpu="2", memory=GIB, guaranteed=True, tier="dedicated"),
        )
    ]
    state = node(running, *done)
    assert [p.pod.name for p in state.pods] == ["web"]

    # Online uses nearly everything: were the finished jobs counted, batch would be starved.
    snaps = [(float(t), snapshot(float(t), state=state, online=7000.0)) for t in range(6)]
    plans = run(snaps, settings=s)
    assert evicted(plans) == []
    assert all(p.dedicated_pods == () and p.shared_cpus is None for p in plans)
    assert plans[-1].batch_pods == ()
    # The same pods still running: starved, evicted; payments gets its cores.
    live = node(running, *(dataclasses.replace(p, phase="Running") for p in done))
    snaps = [(float(t), snapshot(float(t), state=live, online=7000.0)) for t in range(6)]
    plans = run(snaps, settings=s)
    assert evicted(plans) and "batch starved" in plans[3].evictions[0].reason
    assert [d.pod for d in plans[0].dedicated_pods] == ["default/payments"]
