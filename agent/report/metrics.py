"""Every metric of colocd, declared in one place on an injected `CollectorRegistry`.

Names are `colocd_<subsystem>_<name>_<unit>` in base units (seconds, bytes, cores, GPU
devices); labels take values from small fixed sets only: `tier` (system/dedicated/online/
batch), `resource` (cpu/memory/gpu), `knob` (the knob table), `result` (the executor's
outcomes, tick results), `reason` (a class, never free text), `trigger` (usage/pressure),
`mode`, `indicator` (the margin's indicator setting). `colocd_agent_info` alone carries
`nodename` and `version`: one value each per process, for dashboards to pick a node by name.

    agent      info{nodename,version}
    loop       tick_duration_seconds, ticks_total{result}, last_tick_timestamp_seconds,
               degraded{reason}
    budget     batch_cpu_cores, batch_memory_bytes, batch_gpu_devices, degraded{resource},
               predicted_online_cpu_cores, predicted_online_memory_bytes,
               capacity_cpu_cores, capacity_memory_bytes
    margin     cpu_cores, cpu_ratio, indicator{indicator} and indicator_target{indicator}
               (in the indicator's own unit)
    executor   writes_total{knob,result}
    sampler    vanished_cgroups_total
    fastpath   clamps_total{trigger}, reaction_seconds, evaluations_total, mode{mode}
    tier       pods{tier}
    eviction   decisions_total{mode}
    network    sent_bytes_total{tier,direction}, dropped_packets_total{tier,direction},
               batch_ceiling_bytes_per_second{direction}, batch_ceiling_reason{direction,reason},
               marked_addresses{tier}, shaping_active
    gpu        devices, used_devices{gpu,tier}, offered_devices{gpu}, margin_devices{gpu},
               memory_used_bytes{gpu,tier}, memory_total_bytes{gpu}, surged_devices
    nvml       errors_total{gpu}
    freezer    frozen_pods, freezes_total, thaws_total, evictions_total{reason}
    mapping    mismatches{check}

GPU series exist only on a node whose GPUs NVML reads: without them `budget_batch_gpu_devices`,
`node_published_batch_gpu_devices` and `gpu_devices` are not exported at all (absent, never 0),
and the per-GPU families have no series. `gpu` is the device index (bounded by GPU_INDICES).

`KubeMetrics` holds the Kubernetes side's (informers, node status writes, Eviction API
requests, Events, ColocationPolicies); `AgentMetrics` builds one on the same registry, and
`colocd policy controller` uses it alone. Build one per registry and hand it down.

    informer   objects{resource}, synced{resource}, connected{resource},
               lists_total{resource,reason}, events_total{resource,type},
               errors_total{resource,error}, parse_errors_total{resource}
    node       status_writes_total{reason,result}, status_skips_total{reason},
               published_batch_cpu_cores, published_batch_memory_bytes,
               published_batch_gpu_devices
    eviction   requests_total{result}
    events     recorded_total{type,result}
    policy     objects{state}, rejected_total, effective_fallback, ties,
               status_writes_total{result}
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from isolation.executor import ApplyReport, Outcome
from isolation.knobs import KNOBS
from qos.budget import Resource
from qos.network import CEILING_REASONS, DIRECTIONS, NetworkPlan
from qos.plan import Plan
from qos.samples import GpuDeviceReading
from qos.tiers import Tier

__all__ = [
    "DEGRADED_REASONS",
    "GPU_EVICTION_REASONS",
    "GPU_INDICES",
    "MAPPING_CHECKS",
    "AgentMetrics",
    "KubeMetrics",
    "serve",
]

NAMESPACE = "colocd"
# Why the loop runs degraded (the label values of colocd_loop_degraded).
DEGRADED_REASONS = ("stale_readings", "pod_source", "apply_failed")
TICK_RESULTS = ("ok", "unsynced", "error")
FAST_TRIGGERS = ("usage", "pressure")
FAST_MODES = ("psi-trigger", "interval", "off")
EVICTION_MODES = ("evict", "dry_run")
# GPU label values: device indices (NVML numbers a node's GPUs from 0; 64 is far above any).
GPU_INDICES = tuple(str(i) for i in range(64))
GPU_EVICTION_REASONS = ("frozen_too_long", "gpu_memory")
MAPPING_CHECKS = ("visible_devices", "device_cgroup", "device_node")
# Fast-path reactions: tens of milliseconds expected, a second is a miss.
REACTION_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
Labels = tuple[str, ...]


class _Declare:
    """Declares the metrics `colocd_<name>[_<unit>]` on one registry, `name` being
    "<subsystem>_<name>"; AgentMetrics and KubeMetrics both declare through it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def gauge(self, name: str, doc: str, labels: Labels = (), unit: str = "") -> Gauge:
        return Gauge(name, doc, labels, namespace=NAMESPACE, unit=unit, registry=self._registry)

    def counter(self, name: str, doc: str, labels: Labels = ()) -> Counter:
        return Counter(name, doc, labels, namespace=NAMESPACE, registry=self._registry)

    def histogram(self, name: str, doc: str, unit: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(
            name, doc, namespace=NAMESPACE, unit=unit, buckets=buckets, registry=self._registry
        )


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        d = _Declare(registry)
        self.info = d.gauge(
            "agent_info",
            "Always 1; names the node this agent runs on and its version.",
            ("nodename", "version"),
        )
        self.tick_duration = d.histogram(
            "loop_tick_duration",
            "Time one full tick takes (sample, decide, enforce, report).",
            unit="seconds",
            buckets=TICK_BUCKETS,
        )
        self.ticks = d.counter("loop_ticks", "Ticks, by result.", ("result",))
        self.last_tick = d.gauge(
            "loop_last_tick_timestamp", "Unix time of the last full tick.", unit="seconds"
        )
        self.degraded = d.gauge(
            "loop_degraded", "1 while the loop runs degraded, by reason class.", ("reason",)
        )
        self.batch_cpu = d.gauge(
            "budget_batch_cpu", "CPU offered to batch (colocd.io/batch-cpu).", unit="cores"
        )
        self.batch_memory = d.gauge(
            "budget_batch_memory", "Memory offered to batch (batch-memory).", unit="bytes"
        )
        self.batch_gpu = d.gauge(
            "budget_batch_gpu", "GPU time offered to batch (batch-gpu / 100).", unit="devices"
        )
        self.budget_degraded = d.gauge(
            "budget_degraded",
            "1 while a budget is not computed from fresh, complete readings.",
            ("resource",),
        )
        self.online_cpu = d.gauge(
            "budget_predicted_online_cpu",
            "Predicted online CPU demand: max(current, p95 of the window).",
            unit="cores",
        )
        self.online_memory = d.gauge(
            "budget_predicted_online_memory",
            "Predicted online memory (page cache included): max(current, p95 of the window).",
            unit="bytes",
        )
        self.capacity_cpu = d.gauge(
            "budget_capacity_cpu", "Node CPU the budgets are computed from.", unit="cores"
        )
        self.capacity_memory = d.gauge(
            "budget_capacity_memory", "Node memory the budgets are computed from.", unit="bytes"
        )
        self.margin_cores = d.gauge(
            "margin_cpu", "CPU safety margin kept free for online.", unit="cores"
        )
        self.margin_ratio = d.gauge(
            "margin_cpu", "CPU safety margin as a fraction of capacity.", unit="ratio"
        )
        self.indicator = d.gauge(
            "margin_indicator",
            "The interference indicator the margin controller reads, by which one (in its "
            "own unit; NaN when not read).",
            ("indicator",),
        )
        self.indicator_target = d.gauge(
            "margin_indicator_target",
            "The target the margin controller holds the indicator to (in its own unit).",
            ("indicator",),
        )
        self._indicator_name: str | None = None
        self.writes = d.counter(
            "executor_writes", "cgroup writes by knob and outcome.", ("knob", "result")
        )
        self.vanished = d.counter(
            "sampler_vanished_cgroups",
            "Pod cgroups that vanished between discovery and reading (normal churn).",
        )
        self.clamps = d.counter(
            "fastpath_clamps", "Batch clamped between ticks, by trigger.", ("trigger",)
        )
        self.reaction = d.histogram(
            "fastpath_reaction",
            "From the start of the interval that showed an online surge to the clamp applied.",
            unit="seconds",
            buckets=REACTION_BUCKETS,
        )
        self.evaluations = d.counter(
            "fastpath_evaluations", "Surges seen between ticks (each decided again)."
        )
        self.fast_mode = d.gauge(
            "fastpath_mode", "1 for the way the fast path wakes up.", ("mode",)
        )
        self.pods = d.gauge("tier_pods", "Pods on the node, by tier.", ("tier",))
        self.evictions = d.counter(
            "eviction_decisions", "Evictions decided by the brain.", ("mode",)
        )
        self.net_sent = d.counter(
            "network_sent_bytes", "Bytes each tier's class sent, per direction "
            "(egress on the uplink, ingress on its ifb).", ("tier", "direction"),
        )  # fmt: skip
        self.net_dropped = d.counter(
            "network_dropped_packets",
            "Packets each tier's class dropped, per direction.", ("tier", "direction"),
        )  # fmt: skip
        self.net_ceiling = d.gauge(
            "network_batch_ceiling_bytes_per_second",
            "The batch tier's ceiling in force: link rate - measured non-batch - margin, "
            "within the policy's bounds.", ("direction",),
        )  # fmt: skip
        self.net_ceiling_reason = d.gauge(
            "network_batch_ceiling_reason", "1 for why the batch ceiling is what it is.",
            ("direction", "reason"),
        )  # fmt: skip
        self.net_marked = d.gauge(
            "network_marked_addresses",
            "Pod addresses whose packets carry the tier mark.", ("tier",),
        )  # fmt: skip
        self.net_active = d.gauge(
            "network_shaping_active", "1 while colocd's uplink shaping is in force."
        )
        self.gpu_devices = d.gauge("gpu_devices", "GPUs NVML reads on this node.")
        self.gpu_used = d.gauge(
            "gpu_used",
            "Share of each GPU's SM time in use, by tier (online: every process not batch).",
            ("gpu", "tier"),
            unit="devices",
        )
        self.gpu_offered = d.gauge(
            "gpu_offered", "Each GPU's share of batch-gpu, in GPUs.", ("gpu",), unit="devices"
        )
        self.gpu_margin = d.gauge(
            "gpu_margin", "GPU margin kept free for online (PID-sized).", ("gpu",), unit="devices"
        )
        self.gpu_memory_used = d.gauge(
            "gpu_memory_used", "GPU memory in use, by tier.", ("gpu", "tier"), unit="bytes"
        )
        self.gpu_memory_total = d.gauge(
            "gpu_memory_total", "Each GPU's memory.", ("gpu",), unit="bytes"
        )
        self.gpu_surged = d.gauge(
            "gpu_surged", "GPUs where online surges (their batch pods frozen).", unit="devices"
        )
        self.nvml_errors = d.counter(
            "nvml_errors", "NVML failures reading one GPU (the others still read).", ("gpu",)
        )
        self.frozen_pods = d.gauge(
            "freezer_frozen_pods", "Batch pods frozen because online needs their GPU."
        )
        self.freezes = d.counter("freezer_freezes", "Batch pods frozen (online surged on a GPU).")
        self.thaws = d.counter("freezer_thaws", "Batch pods thawed (online receded).")
        self.gpu_evictions = d.counter(
            "freezer_evictions",
            "Batch pods evicted off a GPU: frozen too long, or GPU memory online needs.",
            ("reason",),
        )
        self.mismatches = d.gauge(
            "mapping_mismatches",
            "Processes on a GPU their container was not given, by the check that says so.",
            ("check",),
        )
        self._hidden: set[int] = set()
        self._series: dict[Gauge, set[tuple[str, ...]]] = {}  # per-GPU series set last tick
        for m in (self.gpu_devices, self.batch_gpu, self.gpu_surged, self.frozen_pods):
            self._show(m, False)
        self.kube = KubeMetrics(registry)
        self._prime()

    def _prime(self) -> None:
        """Every label value exists from the start (a rate over a missing series is empty)."""
        for reason in DEGRADED_REASONS:
            self.degraded.labels(reason).set(0)
        for result in TICK_RESULTS:
            self.ticks.labels(result)
        for r in Resource:
            self.budget_degraded.labels(r.value).set(0)
        for knob in KNOBS:
            for o in Outcome:
                self.writes.labels(knob, o.value)
        for t in FAST_TRIGGERS:
            self.clamps.labels(t)
        for m in FAST_MODES:
            self.fast_mode.labels(m).set(0)
        for tier in Tier:
            self.pods.labels(tier.value).set(0)
        for mode in EVICTION_MODES:
            self.evictions.labels(mode)
        for tier in Tier:
            for direction in DIRECTIONS:
                self.net_sent.labels(tier.value, direction)
                self.net_dropped.labels(tier.value, direction)
        for reason in GPU_EVICTION_REASONS:
            self.gpu_evictions.labels(reason)
        for check in MAPPING_CHECKS:
            self.mismatches.labels(check).set(0)

    def _show(self, metric: Gauge, present: bool) -> None:
        """Export `metric` or not: a value that does not exist is absent, never 0."""
        hidden = id(metric) in self._hidden
        if present and hidden:
            self.registry.register(metric)
            self._hidden.discard(id(metric))
        elif not present and not hidden:
            self.registry.unregister(metric)
            self._hidden.add(id(metric))

    # --- updates from the loop -----------------------------------------------------------

    def identify(self, node: str) -> None:
        self.info.clear()
        self.info.labels(node, _version()).set(1)

    def tick(self, result: str, seconds: float | None = None) -> None:
        self.ticks.labels(result).inc()
        if seconds is not None:
            self.tick_duration.observe(seconds)
            self.last_tick.set(time.time())

    def plan(self, plan: Plan) -> None:
        b = plan.budgets
        self.batch_cpu.set(b.cpu.amount / 1000)
        self.batch_memory.set(b.memory.amount)
        self._show(self.batch_gpu, b.gpu is not None)
        if b.gpu is not None:
            self.batch_gpu.set(b.gpu.amount / 100)
        for budget in b.all():
            self.budget_degraded.labels(budget.resource.value).set(int(budget.degraded))
        if b.cpu.terms is not None:
            self.online_cpu.set(b.cpu.terms.online / 1000)
        if b.memory.terms is not None:
            self.online_memory.set(b.memory.terms.online)
        self.capacity_cpu.set(b.cpu.capacity / 1000)
        self.capacity_memory.set(b.memory.capacity)
        m = plan.margin
        self.margin_cores.set(m.millicores / 1000)
        self.margin_ratio.set(m.fraction)
        if m.indicator_name != self._indicator_name:  # the policy switched indicators
            self.indicator.clear()
            self.indicator_target.clear()
            self._indicator_name = m.indicator_name
        self.indicator.labels(m.indicator_name).set(
            float("nan") if m.indicator is None else m.indicator
        )
        self.indicator_target.labels(m.indicator_name).set(m.target)
        for e in plan.evictions:
            self.evictions.labels("dry_run" if e.dry_run else "evict").inc()

    def gpu(
        self,
        plan: Plan,
        devices: tuple[GpuDeviceReading, ...] | None,
        mismatches: Mapping[str, int],
    ) -> None:
        """The GPUs' readings, shares and freezes; `devices` None: no GPU (all absent).
        A value not read this tick has no series (never 0); a series is removed, not
        cleared and set again, so no scrape sees a GPU vanish for a moment."""
        for m in (self.gpu_devices, self.gpu_surged, self.frozen_pods):
            self._show(m, devices is not None)
        for check in MAPPING_CHECKS:
            self.mismatches.labels(check).set(mismatches.get(check, 0))
        series: dict[Gauge, dict[tuple[str, ...], float]] = {
            m: {}
            for m in (
                self.gpu_used,
                self.gpu_offered,
                self.gpu_margin,
                self.gpu_memory_used,
                self.gpu_memory_total,
            )
        }
        for d in devices or ():
            g = str(d.index)
            if d.error is not None:
                self.nvml_errors.labels(g).inc()
            for tier, used, memory in (
                ("online", d.online_percent, d.online_memory_bytes),
                ("batch", d.batch_percent, d.batch_memory_bytes),
            ):
                if used is not None:
                    series[self.gpu_used][g, tier] = used / 100
                if memory is not None:
                    series[self.gpu_memory_used][g, tier] = memory
            if d.memory_total_bytes is not None:
                series[self.gpu_memory_total][(g,)] = d.memory_total_bytes
        gp = plan.gpu if devices is not None else None
        for dp in gp.devices if gp is not None else ():
            series[self.gpu_offered][(str(dp.index),)] = dp.amount / 100
            series[self.gpu_margin][(str(dp.index),)] = dp.margin_fraction
        for metric, values in series.items():
            for gone in self._series.get(metric, set()) - values.keys():
                metric.remove(*gone)
            for labels, value in values.items():
                metric.labels(*labels).set(value)
            self._series[metric] = set(values)
        if devices is None:
            return
        self.gpu_devices.set(len(devices))
        if gp is None:
            return
        self.gpu_surged.set(sum(dp.surged for dp in gp.devices))
        self.frozen_pods.set(len(gp.frozen))
        self.freezes.inc(sum(f.new for f in gp.frozen))
        self.thaws.inc(len(gp.thawed))
        for _pod, why in gp.evictions:
            self.gpu_evictions.labels(why).inc()

    def applied(self, report: ApplyReport) -> None:
        for r in report.results:
            if r.write.knob in KNOBS:
                self.writes.labels(r.write.knob, r.outcome.value).inc()

    def degraded_reasons(self, active: Iterable[str]) -> None:
        on = set(active)
        for reason in DEGRADED_REASONS:
            self.degraded.labels(reason).set(int(reason in on))

    def tiers(self, counts: dict[Tier, int]) -> None:
        for tier in Tier:
            self.pods.labels(tier.value).set(counts.get(tier, 0))

    def network(
        self,
        plan: NetworkPlan,
        deltas: Iterable[tuple[Tier, str, int, int]],
        active: bool,
    ) -> None:
        """One tick of shaping: (tier, direction, bytes, drops) since the last reading."""
        for tier, direction, sent, dropped in deltas:
            self.net_sent.labels(tier.value, direction).inc(sent)
            self.net_dropped.labels(tier.value, direction).inc(dropped)
        for c in plan.ceilings:
            self.net_ceiling.labels(c.direction).set(c.bps / 8)
            for reason in CEILING_REASONS:
                self.net_ceiling_reason.labels(c.direction, reason).set(int(reason == c.kind))
        for tier in Tier:
            self.net_marked.labels(tier.value).set(len(plan.ips.get(tier, ())))
        self.net_active.set(int(active))

    def fast_path_mode(self, mode: str) -> None:
        for m in FAST_MODES:
            self.fast_mode.labels(m).set(int(m == mode))

    def clamp(self, trigger: str, reaction_s: float) -> None:
        self.clamps.labels(trigger).inc()
        self.reaction.observe(reaction_s)


class KubeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        d = _Declare(registry)

        # Informers (pods of this node, this node, ColocationPolicies).
        self.informer_objects = d.gauge(
            "informer_objects", "Objects in the informer's cache.", ("resource",)
        )
        self.informer_synced = d.gauge(
            "informer_synced", "1 once the informer has listed everything.", ("resource",)
        )
        self.informer_connected = d.gauge(
            "informer_connected",
            "1 while list/watch works; 0 while the cache is served without the API server.",
            ("resource",),
        )
        self.informer_lists = d.counter(
            "informer_lists",
            "Full listings, by reason (initial, expired on 410 Gone, reconnect).",
            ("resource", "reason"),
        )
        self.informer_events = d.counter(
            "informer_events", "Watch events applied to the cache.", ("resource", "type")
        )
        self.informer_errors = d.counter(
            "informer_errors", "List/watch failures, by error class.", ("resource", "error")
        )
        self.informer_parse_errors = d.counter(
            "informer_parse_errors",
            "Objects the informer could not parse (left out of the cache).",
            ("resource",),
        )

        # Node extended resources (colocd.io/batch-*).
        self.node_status_writes = d.counter(
            "node_status_writes",
            "Node status patches of the batch resources, by trigger and result.",
            ("reason", "result"),
        )
        self.node_status_skips = d.counter(
            "node_status_skips", "Publish calls that wrote nothing, by reason.", ("reason",)
        )
        self.node_batch_cpu = d.gauge(
            "node_published_batch_cpu_cores", "colocd.io/batch-cpu last written, in cores."
        )
        self.node_batch_memory = d.gauge(
            "node_published_batch_memory_bytes", "colocd.io/batch-memory last written."
        )
        self.node_batch_gpu = d.gauge(
            "node_published_batch_gpu_devices",
            "colocd.io/batch-gpu last written, in whole GPUs (absent on a node without GPUs).",
        )
        self._registry = registry
        self._gpu_shown = True
        self.show_published_gpu(None)

        # Evictions through the Eviction API, and the Events colocd writes.
        self.evictions = d.counter(
            "eviction_requests",
            "Eviction decisions carried out, by result (evicted, dry_run, blocked, backoff, "
            "gone, failed).",
            ("result",),
        )
        self.events = d.counter(
            "events_recorded",
            "Kubernetes Events, by type and result (sent, suppressed as a repeat, failed).",
            ("type", "result"),
        )

        # ColocationPolicies.
        self.policy_objects = d.gauge(
            "policy_objects", "ColocationPolicy objects seen, by validity.", ("state",)
        )
        self.policy_rejected = d.counter(
            "policy_rejected",
            "Policy versions rejected as invalid (the last good version stays in force).",
        )
        self.policy_fallback = d.gauge(
            "policy_effective_fallback",
            "1 while this node runs on its last good effective policy because the newest "
            "resolution is invalid.",
        )
        self.policy_ties = d.gauge(
            "policy_ties",
            "Fields set differently by policies of equal rank, decided by name order.",
        )
        self.policy_status_writes = d.counter(
            "policy_status_writes", "ColocationPolicy status patches, by result.", ("result",)
        )

    def show_published_gpu(self, hundredths: int | None) -> None:
        """batch-gpu as written; None (not published: no GPU) is absent, never 0."""
        if (hundredths is not None) != self._gpu_shown:
            if hundredths is None:
                self._registry.unregister(self.node_batch_gpu)
            else:
                self._registry.register(self.node_batch_gpu)
            self._gpu_shown = hundredths is not None
        if hundredths is not None:
            self.node_batch_gpu.set(hundredths / 100)


def _version() -> str:
    try:
        return metadata.version("colocd")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def serve(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """Serve `registry` over HTTP at host:port (a daemon thread); returns the server."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
