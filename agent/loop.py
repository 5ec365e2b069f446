"""The tick loop: sample -> NodeState -> decide -> enforce -> report, once per tick, and the
fast path in between.

    pod source ─► NodeState ─► Topology (cgroups found) ─► Sampler ─► Snapshot
                                                                        │ decide(BrainState)
    status file, metrics, log line ◄── ApplyReport ◄── Executor ◄── Enforcer ◄── Plan

It does not tick before the pod source has synced. The brain's state is carried from tick to
tick; every reading and `now` come from one monotonic clock. Between ticks the fast path
(`agent.observe.fastpath`) watches the online tier and, on a surge, asks the brain again with the
fresh reading (on a copy of its state, which is then dropped) and clamps batch if the new
CPU cap is tighter; the next tick takes over from there.

Pods that `colocd classify` would refuse do not stop the loop: one whose UID another pod has is
left out (the most protected of them keeps the cgroup), a junk tier annotation is ignored,
and each is logged, sent as a Warning Event (the `event` seam) and listed in the status file.

Failing towards online: while the pod source cannot be read the last pods it gave are used;
after `pods_stale_after_s` the readings are withheld, so the brain degrades every budget to
0: nothing new is offered to batch and its CPU cap falls to its floor, while its memory
limits stay where fresh readings put them (see `qos.limits.batch_tier`). Stale readings
degrade the same way inside the brain. Nothing the loop writes throttles online (see
`agent.act.enforce`). After each apply the executor drops what it cached and journaled for
cgroups that are gone. Writes the kernel refuses for lack of privilege (or on a read-only
mount) stop the loop with `fatal` set: nothing it would do could work.

The Kubernetes side plugs in through small seams (`agent.cluster` provides them): any
`PodSource`, a `publish(plan)` for the node's extended resources, an `evict(eviction, pod)`
(the Eviction API, or signals through the pod's cgroup on a bare host), a `qos()`
giving the brain's settings from the policies in force and a `node_capacity()` giving the
node's capacity (the Node's allocatable on Kubernetes);
a `Notifier` for systemd (sd_notify READY/WATCHDOG/STOPPING). Each is optional.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from agent.act.enforce import Enforcer
from agent.act.gpu_freeze import GpuFreezer
from agent.config import Settings
from agent.errors import StatusError
from agent.history import FILENAME, SAVE_EVERY_S, Clocks, load_history, save_history
from agent.network import NetworkSide
from agent.observe.block_devices import read_block_devices
from agent.observe.cover import Cover
from agent.observe.cpu_topology import read_topology
from agent.observe.fastpath import FastPath, Surge, cap_words, tighter
from agent.observe.gpus import GpuObservation, GpuSource
from agent.observe.latency import LatencyFile
from agent.observe.sampler import Sampler
from agent.observe.topology import Locator, Topology
from agent.report.metrics import AgentMetrics
from agent.report.status import FastPathStatus, write_status
from agent.report.tick_report import RECENT_CLAMPS, fast_path_status, status_of, tick_line
from agent.sources.cpu_manager import CpuManagerState
from agent.sources.pod_checks import PodWarning, vet
from agent.sources.pod_source import PodSnapshot, PodSource
from agent.tick import Clamp, Degraded, TickResult
from isolation._gpu_errors import GpuError
from isolation.cgroups import Cgroups
from isolation.errors import IsolationError, JournalError
from isolation.executor import ApplyReport, Executor, Level, Write
from isolation.layout import KubeletLayout
from qos.decide import BrainState, cpu_mechanism, decide
from qos.plan import CpusetCap, Eviction, Plan, QuotaCap
from qos.pod import Pod
from qos.samples import CpuReading, PressureReading, Snapshot
from qos.settings import CpuMechanism, Indicator, QosSettings
from qos.state import NodeCapacity, NodeState
from qos.tiers import TierSettings

__all__ = ["Loop", "Notifier"]

log = logging.getLogger(__name__)

# Before the first tick, usage counters are read once and again after this long, so even a
# single tick (--once) has CPU rates.
PRIME_S = 0.25


class Notifier(Protocol):
    def ready(self, status: str | None = None) -> bool: ...

    def watchdog(self) -> bool: ...

    def stopping(self) -> bool: ...


Publisher = Callable[[Plan], object]
Evict = Callable[[Eviction, Pod | None], object]
# An Event on a pod: (pod, warning, reason, message).
PodEvent = Callable[[Pod, bool, str, str], object]


def _in_use(writes: list[Write], placed: tuple[str, ...], report: ApplyReport) -> set[str]:
    """The cgroups the agent still manages: the levels it wrote, and the placed pods with
    their containers. A pod's cgroup written only because it is still in a subtree after
    its pod left is not among them, so the sweep keeps looking at it until it goes."""
    pods = set(placed)
    used = pods | {
        w.cgroup for w in writes if w.level < Level.POD or w.cgroup.rpartition("/")[0] in pods
    }
    return used - {r.write.cgroup for r in report.vanished}


class Loop:
    def __init__(
        self,
        settings: Settings,
        *,
        source: PodSource,
        cgroups: Cgroups,
        layout: KubeletLayout,
        capacity: NodeCapacity,
        executor: Executor | None,
        metrics: AgentMetrics | None = None,
        publish: Publisher | None = None,
        evict: Evict | None = None,
        notifier: Notifier | None = None,
        qos: Callable[[], QosSettings] | None = None,
        node_capacity: Callable[[], NodeCapacity] | None = None,
        gpus: GpuSource | None = None,
        event: PodEvent | None = None,
        on_tick: Callable[[TickResult], object] | None = None,
        network: NetworkSide | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.source = source
        self.cgroups = cgroups
        self.layout = layout
        self.capacity = capacity
        self.executor = executor
        self.metrics = metrics
        if metrics is not None:
            metrics.identify(settings.agent.node_name)
        self.publish = publish
        self.evict = evict
        self.notifier = notifier
        self.on_tick = on_tick
        self.network = network
        self.gpus = gpus  # None: no GPU on this node (or no NVML)
        self.event = event
        self.gpu_freezer = GpuFreezer(
            () if executor is None else executor.restore_writes("freeze", Level.POD)
        )
        self._mismatches: set[tuple[int, int, str]] = set()
        # The brain's settings: from the policies in force (read each tick) or fixed.
        self._qos_source = qos
        # The node's capacity: as it is now (the Node's allocatable can change) or fixed.
        self._capacity_source = node_capacity
        self.qos = settings.qos
        self.clock = clock
        self.wall = wall
        self.dry_run = settings.agent.dry_run or executor is None
        self.sampler = Sampler(cgroups, settings.agent.node_cgroup, clock)
        latency = settings.agent.latency_file
        self.latency = None if latency is None else LatencyFile(latency)
        self.locator = Locator(cgroups, layout)
        self.topology = read_topology(settings.agent.cpu_topology_root)
        self.cpu_manager = CpuManagerState(settings.agent.cpu_manager_state)
        self.block_devices = read_block_devices(settings.agent.block_devices_root)
        self.enforcer = Enforcer(cgroups, None if self.dry_run else executor)
        fast = settings.agent.fast_path
        self.fast = (
            FastPath(fast, cgroups, self.sampler, clock)
            if fast.enabled and not self.dry_run
            else None
        )
        agent = settings.agent
        history, why = load_history(
            agent.state_dir, agent.node_name, self._clocks(), self.qos.margin
        )
        if why:
            log.warning("%s", why)
        elif history.age is not None:
            log.info("history %s restored, %s", agent.state_dir / FILENAME, history.describe())
        self.brain = BrainState(
            predictor=history.predictor, margin=history.margin, gpus=history.gpus
        )
        self._history_saved_at = clock()
        self.ticks = 0
        self.clamps: list[Clamp] = []  # the most recent ones
        self.clamp_count = 0
        self.last: TickResult | None = None
        self._snapshot: Snapshot | None = None
        self._cap: CpusetCap | QuotaCap | None = None
        self._source_lost_at: float | None = None
        self._ready = False
        self._node_state: tuple[tuple[int, TierSettings], NodeState] | None = None
        self._swept_for: tuple[str, ...] | None = None  # the pod cgroups at the last sweep
        self._lingering = 0  # cgroups of pods gone that still existed at the last sweep
        self.pod_warnings: tuple[PodWarning, ...] = ()  # pods planned without a fault
        # Why the loop stopped on its own (the kernel refuses writes for lack of privilege).
        self.fatal: str | None = None

    # --- one tick ------------------------------------------------------------------------

    def _node(self, view: PodSnapshot) -> NodeState:
        """The pods with their tiers; classified again only when the pods or the tier
        rules changed (classifying hundreds of pods every tick is most of a tick's work)."""
        key = (view.generation, self.qos.tiers, self.capacity)
        if self._node_state is None or self._node_state[0] != key:
            a = self.settings.agent
            state = NodeState.build(a.node_name, self.capacity, view.pods, self.qos.tiers)
            state, warnings = vet(state)
            self._announce(warnings)
            self._node_state = (key, state)
        return self._node_state[1]

    def _announce(self, warnings: tuple[PodWarning, ...]) -> None:
        """Log (and send as Events) the pod faults not seen at the last look; every tick's
        status file lists all of them."""
        known = {str(w) for w in self.pod_warnings}
        for w in warnings:
            if str(w) not in known:
                log.warning("%s", w)
                if self.event is not None and not self.dry_run:
                    self.event(w.pod, True, w.reason, w.message)
        self.pod_warnings = warnings

    def _source_problems(self, view: PodSnapshot, now: float) -> tuple[list[Degraded], bool]:
        """Degraded reasons from the pod source, and whether to withhold the readings."""
        if view.fresh:
            self._source_lost_at = None
            return [], False
        if self._source_lost_at is None:
            self._source_lost_at = now
        lost = now - self._source_lost_at
        limit = self.settings.agent.pods_stale_after_s
        what = "; ".join(view.problems) or "pod source not fresh"
        if lost > limit:
            why = (
                f"pod source: {what} for {lost:.0f}s (limit {limit:g}s): readings withheld, "
                "budgets decay to 0"
            )
            return [Degraded("pod_source", why)], True
        why = f"pod source: {what}; using the last pods read ({lost:.0f}s ago)"
        return [Degraded("pod_source", why)], False

    def tick(self) -> TickResult | None:
        """One full tick; None while the pod source has not synced yet."""
        started = self.clock()
        view = self.source.snapshot()
        if not view.synced:
            if self.metrics is not None:
                self.metrics.tick("unsynced")
            log.info("waiting for the pod source to sync: %s", "; ".join(view.problems) or "-")
            return None
        if self._qos_source is not None:
            self.qos = self._qos_source()
        if self._capacity_source is not None:
            self.capacity = self._capacity_source()
        node = self._node(view)
        topo = self.locator.locate(node)
        watched = self.qos.margin.indicator is Indicator.THROTTLING
        readings = self.sampler.sample(topo, throttling=watched)
        if readings.vanished:  # pods whose cgroup went since they were found: look again
            self.locator.lost(readings.vanished)
            topo = self.locator.locate(node)
        now = readings.at
        degraded, withhold = self._source_problems(view, now)
        snapshot = Snapshot(
            node=node,
            cpus=topo.cpus,
            topology=self.topology,
            kubelet_cpus=self.cpu_manager.read(),
            block_devices=self.block_devices,
        )
        latency = None if self.latency is None else self.latency.read(now, self.wall())
        gpu = self._observe_gpus(topo, now)
        if gpu is not None and not withhold:
            snapshot = snapshot._replace(gpu=gpu.reading)
        if not withhold:
            snapshot = snapshot._replace(
                cpu=readings.cpu,
                memory=readings.memory,
                cpu_pressure=readings.cpu_pressure,
                memory_pressure=readings.memory_pressure,
                throttling=readings.throttling,
                batch_demand=readings.batch_demand,
                latency=None if latency is None else latency.reading,
            )
        plan, self.brain = decide(snapshot, self.brain, self.qos, now)
        self._snapshot = snapshot
        writes = self.enforcer.writes(plan, topo) + self.gpu_freezer.writes(plan, topo)
        report = None if self.dry_run else self._apply(writes, topo)
        if not self.dry_run:
            self._cap = plan.batch_tier.cpu_cap or self._cap
        degraded += [Degraded("stale_readings", f"budget: {why}") for why in plan.degraded]
        if report is not None and report.failed:
            first = report.failed[0]
            why = (
                f"apply: {len(report.failed)} writes failed (first: {first.write.knob} of "
                f"/{first.write.cgroup}: {first.reason})"
            )
            degraded.append(Degraded("apply_failed", why))
        problems = view.problems if view.fresh else ()  # else already in `degraded`
        notes = [*plan.notes, *self.enforcer.notes, *problems, *topo.missing, *topo.refused]
        notes += [str(w) for w in self.pod_warnings]
        if latency is not None and latency.note is not None:
            notes.append(latency.note)
        if self.network is not None:
            notes += self.network.tick(node)
        if gpu is not None:
            notes += [*gpu.errors, *(m.line for m in gpu.mismatches)]
        result = TickResult(
            now, plan, topo, None if withhold else readings, writes, report, degraded, notes
        )
        result.gpu = gpu
        self._act(plan, topo)
        self._gpu_events(plan, topo, gpu)
        if self.fast is not None:
            # Without a CPU cap there is nothing to clamp: the fast path then only waits.
            capped = cpu_mechanism(self.qos) is not CpuMechanism.IDLE_ONLY
            cover = readings.covers.online if capped else Cover()
            terms = plan.budgets.cpu.terms
            self.fast.arm(cover, None if terms is None else terms.online)
        result.seconds = self.clock() - started
        self.ticks += 1
        self.last = result
        self._report(result)
        return result

    def _apply(self, writes: list[Write], topo: Topology) -> ApplyReport:
        assert self.executor is not None
        report = self.executor.apply(writes)
        if self.metrics is not None:
            self.metrics.applied(report)
        # Pods come and go: what is cached or journaled for cgroups gone is dropped, looked
        # for when the pods placed changed, a write found its cgroup gone, or the last sweep
        # saw a pod's cgroup outlive the pod (kubelet removes it a while after).
        placed = tuple(p.cgroup for p in topo.placed)
        if placed != self._swept_for or report.vanished or self._lingering:
            self._swept_for = placed
            try:
                self._lingering = self.executor.sweep(_in_use(writes, placed, report))
            except JournalError as err:
                log.warning("compact the journal: %s", err)
        return report

    def _act(self, plan: Plan, topo: Topology) -> None:
        """Hand the plan to the Kubernetes side: extended resources and evictions."""
        if self.publish is not None and not self.dry_run:
            self.publish(plan)
        for e in plan.evictions:
            place = topo.by_key(e.pod)
            if self.evict is None:
                log.warning("eviction decided, no evictor here: %s", e.reason)
                continue
            # A dry-run agent hands the evictor dry-run evictions: reported, never carried out.
            wanted = dataclasses.replace(e, dry_run=True) if self.dry_run else e
            self.evict(wanted, None if place is None else place.state.pod)

    def _observe_gpus(self, topo: Topology, now: float) -> GpuObservation | None:
        if self.gpus is None:
            return None
        try:
            return self.gpus.observe(topo, now)
        except GpuError as err:  # NVML itself failed: no GPU reading this tick
            log.warning("GPUs not read this tick: %s", err)
            return None

    def _gpu_events(self, plan: Plan, topo: Topology, gpu: GpuObservation | None) -> None:
        """Log, and tell the pods (Events), what the GPU side did and found."""
        changes = [f for f in plan.gpu.freezes if f.new] if plan.gpu is not None else []
        for f in changes:
            log.warning("gpu: %s", f.reason)
            place = topo.by_key(f.pod)
            if self.event is not None and place is not None:
                reason = "GpuFrozen" if f.frozen else "GpuThawed"
                self.event(place.state.pod, f.frozen, reason, f.reason)
        seen = set()
        for m in gpu.mismatches if gpu is not None else ():
            key = (m.user.pid, m.user.gpu, m.check)
            seen.add(key)
            if key not in self._mismatches:
                log.warning("gpu mapping: %s", m.line)
            place = topo.by_key(m.user.pod) if m.user.pod is not None else None
            if self.event is not None and place is not None:
                self.event(place.state.pod, True, "GpuMappingMismatch", m.line)
        self._mismatches = seen

    # --- the fast path ---------------------------------------------------------------------

    def _react(self, surge: Surge) -> None:
        """Decide again on the fresh online reading; clamp batch if the answer is tighter."""
        if self.metrics is not None:
            self.metrics.evaluations.inc()
        last, snapshot = self.last, self._snapshot
        if last is None or snapshot is None or snapshot.cpu is None:
            return
        r = surge.reading
        fresh = snapshot._replace(
            cpu=CpuReading(
                r.at,
                system_used_milli=snapshot.cpu.system_used_milli,
                online_used_milli=r.used_milli,
            )
        )
        if r.stall_fraction is not None:
            fresh = fresh._replace(cpu_pressure=PressureReading(r.at, r.stall_fraction * 100))
        plan, _ = decide(fresh, self.brain, self.qos, r.at)
        cap = plan.batch_tier.cpu_cap
        if not tighter(cap, self._cap, self.settings.agent.fast_path.min_quota_drop):
            return
        pool = plan.shared_cpus.cpus if plan.shared_cpus is not None else last.topology.cpus
        report = self._apply(self.enforcer.cap_writes(cap, last.topology, pool), last.topology)
        done = self.clock()
        clamp = Clamp(done, self.wall(), surge.trigger, done - r.since, cap_words(cap))
        self._cap = cap
        self.clamps.append(clamp)
        del self.clamps[:-RECENT_CLAMPS]
        self.clamp_count += 1
        if self.metrics is not None:
            self.metrics.clamp(surge.trigger, clamp.reaction_s)
        log.info(
            "fast path: %s; clamped to %s in %.0f ms (%s)",
            surge.why,
            clamp.cap,
            clamp.reaction_s * 1000,
            report,
        )

    # --- reporting -------------------------------------------------------------------------

    def _report(self, result: TickResult) -> None:
        log.info("%s", tick_line(result, self.ticks))
        if self.metrics is not None:
            self.metrics.tick("ok", result.seconds)
            self.metrics.plan(result.plan)
            self.metrics.tiers(dict(Counter(p.tier for p in result.topology.node.pods)))
            self.metrics.vanished.inc(len(result.readings.vanished) if result.readings else 0)
            self.metrics.degraded_reasons(d.kind for d in result.degraded)
            gpu = result.gpu
            checks = Counter(m.check for m in gpu.mismatches) if gpu is not None else Counter()
            self.metrics.gpu(result.plan, None if gpu is None else gpu.reading.per_device, checks)
            if self.fast is not None:
                self.metrics.fast_path_mode(self.fast.mode)
        if not self.dry_run:
            fast = FastPathStatus(mode="off")
            if self.fast is not None:
                fast = fast_path_status(self.fast, self.clamps, self.clamp_count)
            agent = self.settings.agent
            status = status_of(
                result,
                node=agent.node_name,
                tick_s=agent.tick_s,
                ticks=self.ticks,
                written_at=self.wall(),
                fast_path=fast,
            )
            try:
                write_status(agent.state_dir, status)
            except StatusError as err:  # a report must never stop the loop
                log.warning("%s", err)
            if self.clock() - self._history_saved_at >= SAVE_EVERY_S:
                self._save_history()
        if self.on_tick is not None:
            self.on_tick(result)

    def _clocks(self) -> Clocks:
        return Clocks(self.clock(), self.wall())

    def _save_history(self) -> None:
        agent = self.settings.agent
        self._history_saved_at = self.clock()
        try:
            indicator = self.qos.margin.indicator
            save_history(agent.state_dir, agent.node_name, self.brain, indicator, self._clocks())
        except OSError as err:  # the next start is then a new node's, never a stopped loop
            log.warning("write history %s: %s", agent.state_dir, err.strerror or err)

    # --- running -------------------------------------------------------------------------

    def prime(self) -> None:
        """Read the usage counters once, so the first tick has rates."""
        view = self.source.snapshot()
        if view.synced:
            self.sampler.sample(self.locator.locate(self._node(view)))

    def run(self, stop: threading.Event, *, once: bool = False) -> TickResult | None:
        """Tick until `stop` is set (or once); returns the last tick."""
        tick_s = self.settings.agent.tick_s
        while not self.source.snapshot().synced:
            if self.metrics is not None:
                self.metrics.tick("unsynced")
            if stop.wait(min(tick_s, 1.0)):
                return None
        self.prime()
        if stop.wait(min(PRIME_S, tick_s)):
            return None
        deadline = self.clock()
        while not stop.is_set():
            try:
                result = self.tick()
            except IsolationError as err:
                # The cgroup tree itself is unusable (e.g. kubelet's root was removed): say
                # so and try again next tick; batch keeps the caps it has.
                log.error("tick failed: %s", err)
                if self.metrics is not None:
                    self.metrics.tick("error")
                result = None
            if result is not None:
                self._notify()
                self.fatal = _denied(result)
            if once or self.fatal is not None:
                return result
            deadline = max(deadline + tick_s, self.clock())
            if self.fast is not None:
                self.fast.watch(deadline, stop, self._react)
            else:
                stop.wait(max(0.0, deadline - self.clock()))
        return self.last

    def _notify(self) -> None:
        if self.notifier is None:
            return
        if not self._ready:
            self.notifier.ready(f"ticking every {self.settings.agent.tick_s:g}s")
            self._ready = True
        self.notifier.watchdog()

    def close(self) -> ApplyReport | None:
        """Stop watching, then revert the cgroups when configured to (revert_on_exit)."""
        if self.notifier is not None:
            self.notifier.stopping()
        if self.fast is not None:
            self.fast.close()
        if not self.dry_run:
            self._save_history()
        report = None
        if self.network is not None:
            for line in self.network.close(self.settings.isolation.revert_on_exit):
                log.info("network reverted: %s", line)
        if self.executor is not None and not self.dry_run:
            report = self.executor.close()
        self.cgroups.close()
        if self.gpus is not None:
            self.gpus.close()
        return report


def _denied(result: TickResult) -> str | None:
    """The kernel refused writes for lack of privilege (EACCES/EPERM) or on a read-only
    mount (EROFS): colocd is not running as root, or something stronger (an LSM, a
    read-only view of cgroupfs) stands in its way. Nothing
    it would do can work, so the loop stops and says so instead of failing every tick."""
    report = result.report
    if report is None:
        return None
    denied = [r for r in report.failed if r.errno in (errno.EACCES, errno.EPERM, errno.EROFS)]
    if not denied:
        return None
    first = denied[0]
    return (
        f"write {first.write.knob} of /{first.write.cgroup}: {os.strerror(first.errno or 0)} "
        f"({len(denied)} of {len(report.results)} writes refused): colocd must run as root "
        "with write access to the cgroup tree"
    )
