"""`QosSettings`: every knob of the brain, one frozen pydantic model built from sections.

Numbers are in base units: millicores, bytes, seconds, fractions of 1 (0.95, not 95 %),
percent only where the kernel speaks percent (PSI). Defaults follow the peers' published
numbers (ANCHORS.md) where those exist, and say so in their description. The Kubernetes
`ColocationPolicy` (with unit strings such as "500m", "2Gi", "5m") is mapped onto this model
by `agent/`; `colocd simulate --policy` reads overrides of it from YAML/JSON.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import ConfigDict, Field, model_validator

from qos.strict_numbers import StrictNumbers
from qos.tiers import DEFAULT_TIER_SETTINGS, TierSettings
from qos.units import MIB

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Section(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PredictorSettings(_Section):
    """How demand is predicted: max(current use, the window's level) + a burst allowance
    (the largest rise above that level seen so far, fading, x a factor; or a cold-start share
    of capacity while the node is new, whichever is larger). Tuned on the shipped Alibaba,
    Bitbrains and synthetic traces (`colocd simulate`), at 1-s to 300-s rates.

    Memory is predicted otherwise (`for_memory()`): it is not compressible (a rise the
    allowance misses is an OOM kill or an eviction, not a slower tick), but it moves in
    steps and rarely past its own record. Its demand is the higher of its 24-h peak and the
    current reading + 1.8 x the largest step that took it to a new peak; a new node's
    allowance (on both) is small and short."""

    window_seconds: float = Field(
        3 * 3600.0,
        gt=0,
        description="Length of the sliding window of past use whose level is held (default "
        "3 h: on the Alibaba traces a reading rose at most 0.18-0.24 of the node above the "
        "3-h peak, against 0.37-0.64 above the reading before it).",
    )
    percentile: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Percentile of the window taken as its level (1.0 = the peak).",
    )
    max_samples: int = Field(
        10_800,
        ge=1,
        description="Upper bound on samples kept per series, whatever the tick rate "
        "(3 h at one sample a second).",
    )
    burst_factor: float = Field(
        1.5,
        ge=1.0,
        allow_inf_nan=False,
        description="Safety factor on the largest rise above the level seen so far (CPU "
        "and GPU; memory has its own, memory_burst_factor).",
    )
    step_factor: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="Safety factor on the largest step from one reading to the next that "
        "took use above the level, added to the current reading; demand is the higher of "
        "that and the level with its allowance (0 = off, as for CPU and GPU; memory's is "
        "memory_burst_factor).",
    )
    burst_half_life_seconds: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        allow_inf_nan=False,
        description="The largest rise seen fades by half over this time (default a week: "
        "a node that once burst is expected to burst again).",
    )
    cold_start_cpu_fraction: Fraction = Field(
        0.6,
        description="CPU burst allowance of a new node, as a share of its capacity, before "
        "its own rises are evidence enough.",
    )
    regime_ratio: float = Field(
        4.0,
        ge=0.0,
        allow_inf_nan=False,
        description="Past the cold start, a rise above the level of more than this many "
        "times the largest rise seen (and more than regime_min_fraction of capacity) is a "
        "regime change of the node: the allowance of both CPU and memory becomes all of "
        "capacity (nothing offered), fading to 0 over each one's cold-start time, as for a "
        "new node (0 = off); vm185's memory leapt with its CPU. Default 4: on "
        "examples/traces only vm185 rose so far past its own record (0.1 % -> 13 % of the "
        "node, 5 min before its CPU leapt to 96 % after 7.7 flat hours); past their cold "
        "start the other traces' records above 5 % of the node grew at most 2.4x (diurnal). "
        "Any ratio from 3 to 10 gave the same results; 2 cost diurnal its CPU reclaim.",
    )
    regime_min_fraction: Fraction = Field(
        0.05,
        description="A regime change must rise by more than this share of capacity, so an "
        "idle node's jitter is no regime change.",
    )
    memory_window_seconds: float = Field(
        24 * 3600.0,
        gt=0,
        description="Length of the window whose peak memory demand never falls below "
        "(default 24 h: on examples/traces a 3-h window let steps to a new peak through "
        "on three of the Alibaba machines (110-370 s) and on diurnal, a 12-h one on two of "
        "them (140-230 s); 48 h cost vm420 a quarter of its reclaim, below Volcano's).",
    )
    memory_burst_factor: float = Field(
        1.8,
        ge=1.0,
        allow_inf_nan=False,
        description="Safety factor on the largest step of memory, from one reading to the "
        "next, that took it above its window's peak; added to the current reading (default "
        "1.8: on examples/traces 1.6 let such a step through on diurnal, 1.5 on m_1942 and "
        "vm392 too; 1.7 to 1.9 let none through that 1.8 does not; 2 reclaimed less than "
        "Katalyst on m_1942, and only 2.1 catches vm185's step of 2x at 4.5 h).",
    )
    cold_start_memory_fraction: Fraction = Field(
        0.1,
        description="The cold-start allowance for memory, on its peak and on its current "
        "reading, for readings cold_start_memory_gap_seconds apart (default 10 %: after "
        "15 min vm392, read every 300 s, stepped by 12.8 % of the node to 5.8 % above its "
        "peak, which 5 % lets through; 10 % of the node held free for the first hour costs "
        "the 2-s noisy and bursty traces their bars, hence the scaling by gap).",
    )
    cold_start_memory_seconds: Seconds = Field(
        3600.0,
        description="The memory cold-start allowance fades linearly to 0 over this time "
        "(default 1 h: over 30 min it let early rises through on vm28 and m_1934).",
    )
    cold_start_memory_gap_seconds: Seconds = Field(
        300.0,
        description="The gap between memory readings that cold_start_memory_fraction is "
        "sized for; readings that come closer together get (gap / this)^0.2 of it, since "
        "memory can step less between two readings the less time lies between them "
        "(default 300 s, the coarsest traces': readings 2 s apart get 37 %, 1 s apart "
        "32 %; 0 = no scaling). On examples/traces an exponent of 0.12-0.24 let no step "
        "through and won the bars of the 2-s noisy and bursty traces; 0.1 left bursty "
        "short of Katalyst, 0.25 let a 2-s step through on it, a square root (0.5) on "
        "noisy too.",
    )
    cold_start_gap_seconds: Seconds = Field(
        0.0,
        description="The gap between readings the cold-start share is sized for; closer "
        "readings get (gap / this)^0.2 of it (0 = no scaling, as for CPU and GPU; memory's "
        "is cold_start_memory_gap_seconds).",
    )
    cold_start_seconds: Seconds = Field(
        2 * 3600.0,
        description="The CPU cold-start allowance fades linearly to 0 over this time "
        "(Koordinator counts pods at their request for their first 24 h; 2 h held the "
        "synthetic step at 40 min and the bursts of the first minutes without violation).",
    )

    def for_memory(self) -> PredictorSettings:
        """These settings with memory's own window, allowance and cold start in force: no
        learned allowance on the level, memory_burst_factor on the step to a new level."""
        return self.model_copy(
            update={
                "window_seconds": self.memory_window_seconds,
                "burst_factor": 0.0,
                "step_factor": self.memory_burst_factor,
                "cold_start_seconds": self.cold_start_memory_seconds,
                "cold_start_gap_seconds": self.cold_start_memory_gap_seconds,
            }
        )


class Indicator(StrEnum):
    """What the margin controller watches on the online tiers."""

    CPU_PSI = "cpu_psi_some_avg10"
    THROTTLING = "cfs_throttled_ratio"
    LATENCY = "latency"


# PSI some avg10 of 20 %: some online task waits for a CPU a fifth of the time. Chosen on
# examples/traces (modelled PSI, Erlang C): 20 reclaimed up to 12 % more CPU than 10 with no
# more violation time on any of the 12 traces; 30 already added violations.
DEFAULT_TARGETS = {Indicator.CPU_PSI: 20.0, Indicator.THROTTLING: 0.05}


class MarginSettings(_Section):
    """The PID controller that sizes the CPU safety margin kept free for online work.

    The controller sees the indicator relative to its target (value/target, so gains are
    unit-free): above target the margin grows at once (bounded by `max_step_up_fraction`
    per decision); below target it shrinks slowly (`shrink_per_second`)."""

    indicator: Indicator = Field(
        Indicator.CPU_PSI,
        description="Interference indicator: online CPU PSI 'some' avg10 in percent "
        "(default), online CFS throttled-period ratio, or the latency the online service "
        "writes to the agent's latency_file.",
    )
    target: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Indicator value to hold online at or below. Default 20.0 (% PSI some) "
        "or 0.05 (throttled ratio); required for the latency indicator, in its unit.",
    )
    kp: float = Field(
        0.05,
        ge=0,
        allow_inf_nan=False,
        description="Proportional gain: margin fraction of capacity per unit of relative "
        "error ((value - target) / target).",
    )
    ki: float = Field(
        0.01,
        ge=0,
        allow_inf_nan=False,
        description="Integral gain: margin fraction per unit of relative error per second.",
    )
    kd: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Derivative gain (on the measurement), per unit of relative error per "
        "second; 0 by default since PSI avg10 is already smoothed.",
    )
    min_fraction: Fraction = Field(
        0.0,
        description="Smallest margin, as a fraction of node CPU capacity (output bound; "
        "the predictor's burst allowance covers bursts between two decisions).",
    )
    max_fraction: Fraction = Field(
        0.5,
        description="Largest margin, as a fraction of node CPU capacity (output bound and "
        "anti-windup clamp of the integral).",
    )
    initial_fraction: Fraction = Field(
        0.0,
        description="Margin at start, before the controller has seen the indicator (the "
        "predictor's cold start covers a new node).",
    )
    max_step_up_fraction: Fraction = Field(
        0.25,
        description="Largest growth of the margin in one decision (fraction of capacity).",
    )
    shrink_per_second: Fraction = Field(
        0.002,
        description="Largest shrink of the margin per second while the indicator is below "
        "target (0.002 = 12 % of capacity per minute).",
    )
    max_dt_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest time step fed to the controller; a longer gap (agent paused) "
        "counts as this much, so one late tick cannot swing the integral.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_fraction > self.max_fraction:
            raise ValueError("margin.min_fraction must not exceed margin.max_fraction")
        if not self.min_fraction <= self.initial_fraction <= self.max_fraction:
            raise ValueError("margin.initial_fraction must lie in [min_fraction, max_fraction]")
        if self.indicator is Indicator.LATENCY and self.target is None:
            raise ValueError("margin.target is required with the latency indicator")
        return self

    @property
    def effective_target(self) -> float:
        return self.target if self.target is not None else DEFAULT_TARGETS[self.indicator]


class ReclaimSettings(_Section):
    """`reclaimable = capacity x max_fraction - system - predicted online - margin`, where
    `system = max(reserved, predicted system use) - what kubelet keeps outside capacity`
    (never below 0): kubelet's reservation is not subtracted twice."""

    cpu_max_fraction: Fraction = Field(
        1.0,
        description="Share of node CPU that online and batch together may be planned to use "
        "(Koordinator's cpu reclaimThresholdPercent, default 60 %, as a fraction); 1.0 since "
        "the predictor's burst allowance is the margin, sized from the node's own rises.",
    )
    memory_max_fraction: Fraction = Field(
        1.0,
        description="Share of node memory that online and batch together may be planned to "
        "use (Koordinator's default 65 %); 1.0 as for CPU.",
    )
    gpu_max_fraction: Fraction = Field(
        0.9, description="Share of node GPU time that online and batch together may use."
    )
    reserved_system_cpu_milli: int = Field(
        0,
        ge=0,
        description="CPU kept for node daemons (kube-reserved + system-reserved), millicores; "
        "the larger of this and the system tier's predicted use is kept, less what kubelet "
        "already keeps outside capacity (the Node's capacity less its allocatable, or the "
        "host's CPUs less kubepods' cpu.max), which is not kept twice.",
    )
    reserved_system_memory_bytes: int = Field(
        0,
        ge=0,
        description="Memory kept for node daemons, bytes; the larger of this and the system "
        "tier's predicted working set is kept, less what kubelet already keeps outside "
        "capacity for them (as for CPU, but not its eviction threshold).",
    )
    kubelet_eviction_memory_bytes: int = Field(
        100 * MIB,
        ge=0,
        description="kubelet's hard eviction threshold for memory.available (its default "
        "100Mi), bytes. The node keeps it free, so node daemons may not use it: it does not "
        "count as memory kubelet keeps outside capacity for them.",
    )
    memory_margin_fraction: Fraction = Field(
        0.0,
        description="Extra fixed memory margin beyond max_fraction, fraction of node memory "
        "(not PID-tuned: memory cannot be taken back from batch within a tick; online's "
        "memory.min/low and the batch tier's memory.max guard it instead).",
    )
    stale_after_seconds: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="A resource's readings older than this make its budget degrade.",
    )
    degrade_seconds: Seconds = Field(
        20.0,
        description="Once stale, the budget decays linearly from its last value to 0 over "
        "this many seconds (0 = drop to 0 at once). Koordinator degrades after 15 min of "
        "stale metrics in its central loop; colocd decides every second on the node.",
    )


class CpuMechanism(StrEnum):
    """How batch CPU is held to its budget."""

    AUTO = "auto"
    CPUSET = "cpuset"
    QUOTA = "quota"
    IDLE_ONLY = "idle-only"


class CpuSuppressSettings(_Section):
    """Batch CPU treatment. `quota` puts a CFS quota (the budget) on the batch tier; `cpuset`
    confines batch to floor(budget) CPUs of the shared pool (Koordinator's default);
    `idle-only` leaves batch uncapped, under SCHED_IDLE where the kernel has cpu.idle;
    `auto` (the default) is `cpuset`.

    Measured, not assumed: benchmarks/bench_reaction.py (part 2) runs an online probe (~0.55
    of a core: 1.1 ms of work every 2 ms) next to two batch hogs in a besteffort pod, with
    cpu.idle where the agent puts it, on the batch pod (kubelet rewrites besteffort's weight,
    which the kernel refuses on an idle group: agent/act/enforce.py). On a 6.18 host with 2
    CPUs, 4 interleaved rounds, no outside load, the median p99 / p99.9 wake-up lateness
    was 108 / 812 us with batch confined to one CPU by cpuset (batch 1.00 core), against
    899 / 3578 us uncapped (1.24 cores), 2890 / 2917 us under a one-CPU quota (1.00) and
    888 / 1530 us for kubelet's weights alone; without cpu.idle, cpuset 116 / 784 and quota
    1894 / 2909 us. An idle pod does not make besteffort idle where it meets burstable under
    kubepods, where EEVDF lets the running entity finish its slice, so only keeping batch
    off some CPUs spares online the wait (cpu.idle on besteffort itself: 81 / 136 us at
    1.38 cores, which kubelet's rewrite rules out). The cap costs batch the CPU online
    leaves idle on the CPUs it is kept off."""

    idle: bool = Field(
        True,
        description="Run the batch tier as cpu.idle (SCHED_IDLE); the loop falls back to "
        "the lowest weight where the kernel has no cpu.idle.",
    )
    mechanism: CpuMechanism = Field(
        CpuMechanism.AUTO,
        description="auto | quota | cpuset | idle-only (see the section); auto = cpuset.",
    )
    cpuset_min_cpus: int = Field(
        1, ge=1, description="Fewest CPUs left to batch by cpuset shrinking (never empty)."
    )
    quota_min_milli: int = Field(
        100, ge=1, description="Smallest CFS quota left to batch by the quota mechanism."
    )
    dedicated_cpusets: bool = Field(
        True,
        description="Give dedicated-tier pods exclusive whole CPUs that no other pod, batch "
        "above all, shares.",
    )


class MemoryQosSettings(_Section):
    """memory.min/low protect online pods; memory.high throttles batch before memory.max."""

    enabled: bool = Field(True, description="Plan memory protection and batch memory limits.")
    online_min_fraction: Fraction = Field(
        0.5, description="Online pod memory.min = request x this (hard protection)."
    )
    online_low_fraction: Fraction = Field(
        1.0, description="Online pod memory.low = request x this (best-effort protection)."
    )
    batch_high_fraction: Fraction = Field(
        0.9,
        description="Batch pod memory.high = its batch-memory limit x this, so reclaim "
        "throttles it before memory.max kills it (Koordinator throttlingPercent).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.online_min_fraction > self.online_low_fraction:
            raise ValueError("memory.online_min_fraction must not exceed online_low_fraction")
        return self


class IoSettings(_Section):
    """Block IO per tier: io.weight (v2; v1 blkio.bfq.weight, which only the BFQ scheduler
    honours) for online and batch pods, and io.max on batch (v1 blkio.throttle.*, which
    any scheduler honours) on the node's disks. A limit of 0 means none."""

    enabled: bool = Field(True, description="Plan IO weights and batch IO limits.")
    online_weight: int = Field(
        100,
        ge=1,
        le=10000,
        description="io.weight of online and dedicated pods (kernel default 100).",
    )
    batch_weight: int = Field(
        10,
        ge=1,
        le=10000,
        description="io.weight of the batch tier: a tenth of the default, so under contention "
        "batch gets about a tenth of what an online pod gets.",
    )
    batch_read_bps: int = Field(0, ge=0, description="Batch read bytes/s per disk (0: no limit).")
    batch_write_bps: int = Field(0, ge=0, description="Batch write bytes/s per disk (0: none).")
    batch_read_iops: int = Field(0, ge=0, description="Batch read IO/s per disk (0: no limit).")
    batch_write_iops: int = Field(0, ge=0, description="Batch write IO/s per disk (0: none).")
    devices: tuple[str, ...] = Field(
        (),
        description="Block device names (as in /sys/block) the batch limits apply to; empty: "
        "every disk of the node (not loop, ram or zram devices).",
    )

    @property
    def limited(self) -> bool:
        return any(
            (self.batch_read_bps, self.batch_write_bps, self.batch_read_iops, self.batch_write_iops)
        )


class EvictionSettings(_Section):
    """Last resort: evict batch pods under sustained memory pressure or CPU starvation."""

    enabled: bool = Field(True, description="Plan evictions at all.")
    dry_run: bool = Field(
        False, description="Plan and report evictions, marked dry-run, without evicting."
    )
    memory_psi_threshold: float = Field(
        10.0,
        ge=0,
        le=100,
        description="Node memory PSI 'some' avg10 (%) at or above which memory counts as "
        "under pressure (the page-cache thrash measured here showed ~19 %).",
    )
    memory_psi_hysteresis: float = Field(
        2.0, ge=0, le=100, description="Pressure ends only below threshold - this (%)."
    )
    memory_usage_threshold: Fraction = Field(
        0.95,
        description="Node working set / capacity at or above which memory counts as under "
        "pressure (Koordinator evicts at 0.70, but colocd plans batch up to max_fraction).",
    )
    memory_usage_hysteresis: Fraction = Field(
        0.02, description="Pressure ends only below threshold - this (Koordinator: 2 %)."
    )
    sustained_seconds: Seconds = Field(
        10.0, description="Memory pressure must last this long before the first eviction."
    )
    starvation_fraction: Fraction = Field(
        0.6,
        description="Batch counts as starved while its CPU budget is below this fraction of "
        "its pods' batch-cpu requests (Koordinator: 60 % of the request).",
    )
    starvation_seconds: Seconds = Field(
        60.0, description="Starvation must last this long before an eviction."
    )
    cooldown_seconds: Seconds = Field(
        20.0,
        description="Least time between two evictions, to let freed resources show "
        "(Koordinator: 4 s memory, 20 s CPU).",
    )
    max_evictions: int = Field(3, ge=0, description="At most this many evictions per rate window.")
    rate_window_seconds: float = Field(
        300.0, gt=0, description="The window of the eviction rate limit."
    )


class GpuSettings(_Section):
    """Reclaiming idle GPU time for batch (`colocd.io/batch-gpu`, hundredths of one GPU), and
    protecting online on each GPU: batch pods using a GPU where online surges are frozen,
    thawed with hysteresis, evicted when frozen too long or when their GPU memory would
    leave online short."""

    enabled: bool = Field(True, description="Publish batch-gpu when the node has GPUs.")
    reserve_fraction: Fraction = Field(
        0.1,
        description="GPU time and memory kept free for online beyond its predicted use "
        "(the GPU's fixed margin).",
    )
    busy_target_percent: float = Field(
        90.0,
        gt=0,
        le=100,
        description="Per GPU, the busy time (online + batch SM %) the margin's PID controller "
        "holds the device to while online runs on it; above it the margin grows, as the CPU "
        "margin does on PSI.",
    )
    max_margin_fraction: Fraction = Field(
        0.5, description="Largest GPU margin the controller may keep free, fraction of a GPU."
    )
    freeze_utilization_percent: float = Field(
        80.0,
        ge=0,
        le=100,
        description="Online SM utilisation (%) of a GPU at or above which the batch pods "
        "using that GPU are frozen (cgroup freezer).",
    )
    freeze_memory_fraction: Fraction = Field(
        0.85,
        description="Online share of a GPU's memory at or above which its batch pods are frozen.",
    )
    thaw_hysteresis_percent: float = Field(
        20.0,
        ge=0,
        le=100,
        description="Frozen batch is thawed only once online utilisation is below the freeze "
        "threshold minus this (and online memory below its threshold minus the same "
        "fraction).",
    )
    thaw_after_seconds: Seconds = Field(
        10.0, description="...and has stayed there this long (no thaw on a momentary dip)."
    )
    max_frozen_seconds: Seconds = Field(
        300.0,
        description="A batch pod frozen this long is evicted (it holds GPU memory while frozen).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.thaw_hysteresis_percent > self.freeze_utilization_percent:
            raise ValueError("gpu.thaw_hysteresis_percent must not exceed the freeze threshold")
        return self


class QosSettings(_Section):
    """All of the brain's settings. Sections: tiers, predictor, margin, reclaim, cpu, memory,
    eviction, gpu, io."""

    tiers: TierSettings = Field(
        DEFAULT_TIER_SETTINGS,
        description="Tier rules (namespaces, priority bands, label selectors) and the QoS "
        "class fallback.",
    )
    predictor: PredictorSettings = Field(default_factory=PredictorSettings)
    margin: MarginSettings = Field(default_factory=MarginSettings)
    reclaim: ReclaimSettings = Field(default_factory=ReclaimSettings)
    cpu: CpuSuppressSettings = Field(default_factory=CpuSuppressSettings)
    memory: MemoryQosSettings = Field(default_factory=MemoryQosSettings)
    eviction: EvictionSettings = Field(default_factory=EvictionSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    io: IoSettings = Field(default_factory=IoSettings)


DEFAULT_QOS_SETTINGS = QosSettings()
