"""From the cgroup readers to the brain's readings (`qos.samples`), per tier.

Each tick reads the node's cgroup and every placed pod's cgroup (pod-level files only;
descriptors stay open in `isolation`), turns the cumulative counters into rates since the
previous tick, and sums them per tier. A pod's files are only those the brain uses: every
pod's CPU usage, memory usage and `memory.stat` (working sets; what is not pods' is
system's), and for online pods also throttling (`cpu.stat` on v1) and CPU PSI; nobody's
memory PSI but the node's. The node's cgroup is read in full. Every
reading is stamped with ONE monotonic clock (the loop's), the same clock `decide()` gets
as `now`. A value that cannot be had is None, never 0:

- CPU: node use from the node cgroup; online = the online tier's pods (dedicated pods are
  counted by the brain from their requests); system = node minus every pod, so node
  daemons and pods the source does not know yet count as system (protected). A pod seen
  for the first time has no rate yet: the online reading is then None (the brain falls
  back to its window's peak).
- Memory: working sets (usage minus inactive file cache), but online's (dedicated pods
  included) is its whole usage, page cache and all (`qos.samples.MemoryReading` says why).
  The v2 root cgroup has no memory.current: there the node's is total minus available.
- Pressure: the worst online pod's CPU PSI some avg10 (the margin's indicator; dedicated
  pods stall only on their own cores, which batch never gets); the node
  cgroup's memory PSI (eviction evidence). On hybrid hosts PSI comes from the cgroup2 mount.
- Throttling: throttled / elapsed CFS periods summed over the online pods since last tick.
- Batch demand: the batch pods' `colocd.io/batch-*` requests.

`online_now()` is the fast path's cheap read: the online pods' CPU use over the last short
interval from a few QoS-level counters (`cover`), and when asked their worst stall,
each with its own previous values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import psutil

from agent.observe.cover import Cover
from agent.observe.topology import PodPlace, Topology
from isolation.cgroups import Cgroups
from isolation.readings import CgroupSample, ReadSet
from qos.samples import (
    BatchDemand,
    CpuReading,
    MemoryReading,
    PressureReading,
    ThrottleReading,
)
from qos.tiers import Tier

__all__ = ["FAST_STALL", "FAST_USAGE", "OnlineNow", "Readings", "Sampler"]

# The fast path reads CPU usage (of a few cgroups: `cover`) and, less often, each
# online pod's CPU PSI: no memory, no throttling.
FAST_USAGE = ReadSet(
    throttling=False, memory=False, memory_stat=False, io=False, psi=False, memory_psi=False
)
FAST_STALL = FAST_USAGE._replace(psi=True)
# A tick: the node in full; online pods without memory PSI; every other pod usage and
# working set only (their throttling and stalls go into no reading).
NODE_READ = ReadSet(io=False)
ONLINE_READ = ReadSet(io=False, memory_psi=False)
OTHER_READ = ReadSet(throttling=False, io=False, psi=False)
ONLINE = (Tier.ONLINE, Tier.DEDICATED)


class Readings(NamedTuple):
    """One tick's readings for the brain, and what could not be read."""

    at: float
    cpu: CpuReading
    memory: MemoryReading
    cpu_pressure: PressureReading | None
    memory_pressure: PressureReading | None
    throttling: ThrottleReading | None
    batch_demand: BatchDemand
    vanished: tuple[str, ...] = ()  # pod cgroups that were placed but could not be read


class OnlineNow(NamedTuple):
    """The online tier over the last fast interval [since, at]."""

    since: float
    at: float
    used_milli: float | None
    stall_fraction: float | None  # the worst online pod's CPU stall (PSI some) / interval


@dataclass(slots=True)
class _Counters:
    """Previous cumulative values per cgroup, to turn counters into rates."""

    at: float | None = None
    values: dict[str, tuple[int | None, ...]] = field(default_factory=dict)

    def step(
        self, at: float, current: dict[str, tuple[int | None, ...]]
    ) -> tuple[float | None, dict[str, tuple[int | None, ...]]]:
        """(seconds since the previous step, previous values) and remember `current`."""
        dt = None if self.at is None or at <= self.at else at - self.at
        previous, self.at, self.values = self.values, at, current
        return dt, previous


def _delta(now: int | None, before: int | None) -> int | None:
    if now is None or before is None or now < before:
        return None  # unknown, or a counter reset (the cgroup was re-created)
    return now - before


def _sum(values: Iterable[float | None]) -> float | None:
    """The sum, or None when any part is missing."""
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += v
    return total


class Sampler:
    def __init__(self, cgroups: Cgroups, node_cgroup: str, clock: Callable[[], float]) -> None:
        self.cgroups = cgroups
        self.node_cgroup = node_cgroup
        self.clock = clock
        self._tick = _Counters()
        self._fast = _Counters()
        self._stalls = _Counters()
        self._fast_dirs: tuple[str, ...] = ()  # the fast path's cover, kept open too
        self._retained: tuple[str, ...] | None = None  # the pod cgroups kept open

    # --- the tick ------------------------------------------------------------------------

    def sample(self, topo: Topology) -> Readings:
        node = self.cgroups.sample(self.node_cgroup, NODE_READ)
        sample = self.cgroups.sample
        pods = [
            sample(p.cgroup, ONLINE_READ if p.tier is Tier.ONLINE else OTHER_READ)
            for p in topo.placed
        ]
        at = self.clock()
        placed = tuple(p.cgroup for p in topo.placed)
        if placed != self._retained:  # descriptors of pods gone are closed
            self.cgroups.retain([self.node_cgroup, *placed, *self._fast_dirs])
            self._retained = placed
        read = [(p, s) for p, s in zip(topo.placed, pods, strict=True) if s is not None]
        vanished = tuple(p.cgroup for p, s in zip(topo.placed, pods, strict=True) if s is None)
        counters = {
            s.cgroup: (s.cpu.usage_ns, s.cpu.periods, s.cpu.throttled_periods)
            for s in ([node] if node is not None else []) + [s for _, s in read]
        }
        dt, before = self._tick.step(at, counters)

        def milli(s: CgroupSample) -> float | None:
            old = before.get(s.cgroup)
            d = _delta(s.cpu.usage_ns, old[0] if old else None)
            return None if d is None or dt is None else d / 1e6 / dt

        rates = {p.key: milli(s) for p, s in read}
        node_milli = milli(node) if node is not None else None
        online = [p for p, _ in read if p.tier is Tier.ONLINE]
        system = None
        if node_milli is not None:
            known = sum(r for r in rates.values() if r is not None)
            system = max(0.0, node_milli - known)
        cpu = CpuReading(
            at,
            node_used_milli=node_milli,
            system_used_milli=system,
            online_used_milli=_sum(rates[p.key] for p in online),
            batch_used_milli=_sum(rates[p.key] for p, _ in read if p.tier is Tier.BATCH),
        )
        online_samples = [s for p, s in read if p.tier is Tier.ONLINE]
        return Readings(
            at=at,
            cpu=cpu,
            memory=self._memory(at, node, read),
            cpu_pressure=self._online_pressure(at, online_samples),
            memory_pressure=self._node_memory_pressure(at, node),
            throttling=self._throttling(at, online_samples, before),
            batch_demand=self._batch_demand(at, topo),
            vanished=vanished,
        )

    def _memory(
        self, at: float, node: CgroupSample | None, read: list[tuple[PodPlace, CgroupSample]]
    ) -> MemoryReading:
        def tier_ws(*tiers: Tier) -> float | None:
            return _sum(s.memory.working_set_bytes for p, s in read if p.tier in tiers)

        def tier_usage(*tiers: Tier) -> float | None:
            return _sum(s.memory.usage_bytes for p, s in read if p.tier in tiers)

        node_ws = None if node is None else node.memory.working_set_bytes
        if node_ws is None and self.node_cgroup == "":
            # The v2 root has no memory.current: the host's own count (total - available).
            vm = psutil.virtual_memory()
            node_ws = vm.total - vm.available
        pods_ws = [s.memory.working_set_bytes for _, s in read]
        system = None
        if node_ws is not None:
            system = max(0.0, node_ws - sum(w for w in pods_ws if w is not None))
        return MemoryReading(
            at,
            node_working_set_bytes=node_ws,
            system_working_set_bytes=system,
            online_memory_bytes=tier_usage(*ONLINE),
            batch_working_set_bytes=tier_ws(Tier.BATCH),
        )

    @staticmethod
    def _online_pressure(at: float, online: list[CgroupSample]) -> PressureReading | None:
        """The worst-stalled online pod: the margin protects the pod that suffers most."""
        cpu = [s.psi.cpu for s in online if s.psi is not None and s.psi.cpu is not None]
        if not cpu:
            return None
        some = [p.some_avg10 for p in cpu if p.some_avg10 is not None]
        full = [p.full_avg10 for p in cpu if p.full_avg10 is not None]
        return PressureReading(
            at, some_avg10=max(some) if some else None, full_avg10=max(full) if full else None
        )

    @staticmethod
    def _node_memory_pressure(at: float, node: CgroupSample | None) -> PressureReading | None:
        mem = None if node is None or node.psi is None else node.psi.memory
        if mem is None:
            return None
        return PressureReading(at, some_avg10=mem.some_avg10, full_avg10=mem.full_avg10)

    @staticmethod
    def _throttling(
        at: float, online: list[CgroupSample], before: dict[str, tuple[int | None, ...]]
    ) -> ThrottleReading | None:
        periods = throttled = 0
        for s in online:
            old = before.get(s.cgroup)
            if old is None:
                return None
            p = _delta(s.cpu.periods, old[1])
            t = _delta(s.cpu.throttled_periods, old[2])
            if p is None or t is None:
                return None
            periods, throttled = periods + p, throttled + t
        # No online pod ran into its quota (or none has one): nothing was throttled.
        return ThrottleReading(at, throttled / periods if periods else 0.0)

    @staticmethod
    def _batch_demand(at: float, topo: Topology) -> BatchDemand:
        batch = topo.node.in_tier(Tier.BATCH)
        return BatchDemand(
            at,
            cpu_milli=float(sum(p.batch.cpu_milli for p in batch)),
            memory_bytes=float(sum(p.batch.memory_bytes for p in batch)),
        )

    # --- the fast path -------------------------------------------------------------------

    def online_now(self, cover: Cover, stall: bool) -> OnlineNow | None:
        """The online pods' CPU use (millicores) since the previous call, from the cover's
        few counters, and with `stall` the worst online pod's stall fraction since the
        previous read of stalls (one file per pod); None on the first call."""
        usage = {
            s.cgroup: s.cpu.usage_ns
            for s in self.cgroups.sample_many(cover.reads, FAST_USAGE)
            if s is not None
        }
        at = self.clock()
        since = self._fast.at
        dt, before = self._fast.step(at, {c: (u,) for c, u in usage.items()})
        if dt is None or since is None:
            return None
        signed = [(c, 1) for c in cover.add] + [(c, -1) for c in cover.subtract]
        deltas = [_delta(usage.get(c), before.get(c, (None,))[0]) for c, _ in signed]
        used = None
        if None not in deltas:  # else a cgroup came or went: no interval for the sum
            total = sum(sign * d for (_, sign), d in zip(signed, deltas, strict=True) if d)
            used = max(0.0, total / 1e6 / dt)  # read a few µs apart: never below 0
        self._fast_dirs = cover.reads
        stalled = self._stall(cover.pods) if stall else None
        return OnlineNow(since, at, used, stalled)

    def _stall(self, online: tuple[str, ...]) -> float | None:
        """The worst online pod's CPU stall (PSI some) / time since the last call."""
        stalled = {
            s.cgroup: (None if s.psi is None or s.psi.cpu is None else s.psi.cpu.some_total_us,)
            for s in self.cgroups.sample_many(online, FAST_STALL)
            if s is not None
        }
        dt, before = self._stalls.step(self.clock(), stalled)
        if dt is None:
            return None
        fractions = [
            d / 1e6 / dt
            for c, (v,) in stalled.items()
            if (d := _delta(v, before.get(c, (None,))[0])) is not None
        ]
        return max(fractions, default=None)
