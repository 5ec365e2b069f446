"""From the cgroup readers to the brain's readings (`qos.samples`), per tier.

Each tick reads the node's cgroup in full, and sums each tier's use from a few counters:
a cgroup's CPU and memory counters hold its whole subtree, so the tiers' sums come from
the QoS-level directories, added and subtracted (`cover`), not from every pod. Pods are
read one by one only for what does not add up: each online pod's CPU PSI (the worst one
is the margin's indicator) and, when the margin watches it, its throttling. Cumulative
counters become rates since the previous tick. Every reading is stamped with ONE
monotonic clock (the loop's), the same clock `decide()` gets as `now`. A value that cannot
be had is None, never 0:

- CPU: node use from the node cgroup; online = the online tier's pods (dedicated pods are
  counted by the brain from their requests); system = node minus every placed pod, so node
  daemons and pods the source does not know yet count as system (protected). A counter
  with no earlier value (a pod just placed, or the sum's directories changed) has no rate
  yet: that tier's reading is None (the brain falls back to its window's peak).
- Memory: working sets (usage minus inactive file cache), but online's (dedicated pods
  included) is its whole usage, page cache and all (`qos.samples.MemoryReading` says why).
  The v2 root cgroup has no memory.current: there the node's is total minus available.
- Pressure: the worst online pod's CPU PSI some avg10 (the margin's indicator; dedicated
  pods stall only on their own cores, which batch never gets); the node
  cgroup's memory PSI (eviction evidence). On hybrid hosts PSI comes from the cgroup2 mount.
- Throttling, when asked: throttled / elapsed CFS periods summed over the online pods
  since last tick (a cgroup's own count: it does not add up from its children).
- Batch demand: the batch pods' `colocd.io/batch-*` requests.
- Vanished: placed pods whose cgroup is no longer listed in their parent, or could not be
  read.

`online_now()` is the fast path's cheap read: the online pods' CPU use over the last short
interval from the same kind of cover, and when asked their worst stall, each with its own
previous values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import psutil

from agent.observe.cover import Cover, cover_of, parent
from agent.observe.topology import Topology
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

__all__ = ["FAST_STALL", "FAST_USAGE", "OnlineNow", "Readings", "Sampler", "TierCovers"]

# The fast path reads CPU usage (of a few cgroups: `cover`) and, less often, each online
# pod's CPU PSI: no memory, no throttling.
FAST_USAGE = ReadSet(
    throttling=False, memory=False, memory_stat=False, io=False, psi=False, memory_psi=False
)
FAST_STALL = FAST_USAGE._replace(psi=True)
# A tick: the node in full; the covers' directories usage and working set; online pods
# their CPU PSI (and throttling, when the margin watches it).
NODE_READ = ReadSet(io=False)
TIER_READ = ReadSet(throttling=False, io=False, psi=False)
ONLINE_READ = ReadSet(throttling=False, memory=False, memory_stat=False, io=False, memory_psi=False)
ONLINE = (Tier.ONLINE, Tier.DEDICATED)


class TierCovers(NamedTuple):
    """The few cgroups each tick sum is read from (`cover_of`)."""

    online: Cover  # the online tier (CPU; dedicated pods are counted from their requests)
    resident: Cover  # online and dedicated (memory)
    batch: Cover
    pods: Cover  # every placed pod: system is the node less these

    @classmethod
    def of(cls, topo: Topology, children: Callable[[str], list[str] | None]) -> TierCovers:
        def tiers(*wanted: Tier) -> Cover:
            pods = [p.cgroup for p in topo.placed if p.tier in wanted]
            others = [p.cgroup for p in topo.placed if p.tier not in wanted]
            return cover_of(pods, others, children)

        return cls(tiers(Tier.ONLINE), tiers(*ONLINE), tiers(Tier.BATCH), tiers(*Tier))

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for cover in self for c in cover.reads))


class Readings(NamedTuple):
    """One tick's readings for the brain, and what could not be read."""

    at: float
    cpu: CpuReading
    memory: MemoryReading
    cpu_pressure: PressureReading | None
    memory_pressure: PressureReading | None
    throttling: ThrottleReading | None
    batch_demand: BatchDemand
    covers: TierCovers  # the cgroups the sums came from (the fast path reads online's)
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


class _KnownCovers(NamedTuple):
    placement: tuple[tuple[str, Tier], ...]
    listings: dict[str, list[str] | None]  # what each directory held when they were made
    covers: TierCovers


def _signed(cover: Cover, value: Callable[[str], float | None]) -> float | None:
    """The cover's sum (never below 0), or None when any part is missing."""
    total = 0.0
    for sign, cgroups in ((1, cover.add), (-1, cover.subtract)):
        for cgroup in cgroups:
            v = value(cgroup)
            if v is None:
                return None
            total += sign * v
    return max(0.0, total)


def _rates(
    now: dict[str, tuple[int | None, ...]],
    before: dict[str, tuple[int | None, ...]],
    dt: float | None,
) -> Callable[[str], float | None]:
    """Each cgroup's CPU use (millicores) from its usage counter (first in its values)
    now and `dt` seconds before; None where either reading is missing."""

    def milli(cgroup: str) -> float | None:
        d = _delta(now.get(cgroup, (None,))[0], before.get(cgroup, (None,))[0])
        return None if d is None or dt is None else d / 1e6 / dt

    return milli


class Sampler:
    def __init__(self, cgroups: Cgroups, node_cgroup: str, clock: Callable[[], float]) -> None:
        self.cgroups = cgroups
        self.node_cgroup = node_cgroup
        self.clock = clock
        self._tick = _Counters()
        self._throttled = _Counters()
        self._fast = _Counters()
        self._stalls = _Counters()
        self._retained: tuple[str, ...] | None = None  # the cgroups the tick keeps open
        self._known: _KnownCovers | None = None

    # --- the tick ------------------------------------------------------------------------

    def sample(self, topo: Topology, *, throttling: bool = False) -> Readings:
        """One tick's readings; with `throttling` the online pods' CFS throttling too."""
        node = self.cgroups.sample(self.node_cgroup, NODE_READ)
        listed = cache(self.cgroups.children)
        covers = self._covers(topo, listed)
        dirs = covers.reads
        tiers = dict(zip(dirs, self.cgroups.sample_many(dirs, TIER_READ), strict=True))
        online = topo.in_tier(Tier.ONLINE)
        pods = self.cgroups.sample_many(
            [p.cgroup for p in online], ONLINE_READ._replace(throttling=throttling)
        )
        at = self.clock()
        # Descriptors of pods gone, and of directories no longer read, are closed; those of
        # every placed pod stay open for the enforcement's writes. The fast path reads the
        # online sum's directories, which are among these.
        kept = (*dirs, *(p.cgroup for p in topo.placed))
        if kept != self._retained:
            self.cgroups.retain([self.node_cgroup, *kept])
            self._retained = kept
        listed_now = {c for d in {parent(p.cgroup) for p in topo.placed} for c in listed(d) or ()}
        unread = {p.cgroup for p, s in zip(online, pods, strict=True) if s is None}
        vanished = tuple(
            p.cgroup for p in topo.placed if p.cgroup in unread or p.cgroup not in listed_now
        )
        usage = {c: (s.cpu.usage_ns,) for c, s in tiers.items() if s is not None}
        if node is not None:
            usage[self.node_cgroup] = (node.cpu.usage_ns,)
        dt, before = self._tick.step(at, usage)
        milli = _rates(usage, before, dt)
        node_milli = milli(self.node_cgroup) if node is not None else None
        pods_milli = _signed(covers.pods, milli)
        cpu = CpuReading(
            at,
            node_used_milli=node_milli,
            system_used_milli=(
                None
                if node_milli is None or pods_milli is None
                else max(0.0, node_milli - pods_milli)
            ),
            online_used_milli=_signed(covers.online, milli),
            batch_used_milli=_signed(covers.batch, milli),
        )
        online_samples = [s for s in pods if s is not None]
        return Readings(
            at=at,
            cpu=cpu,
            memory=self._memory(at, node, covers, tiers),
            cpu_pressure=self._online_pressure(at, online_samples),
            memory_pressure=self._node_memory_pressure(at, node),
            throttling=self._throttling(at, online_samples) if throttling else None,
            batch_demand=self._batch_demand(at, topo),
            vanished=vanished,
            covers=covers,
        )

    def _covers(self, topo: Topology, listed: Callable[[str], list[str] | None]) -> TierCovers:
        """The tick's covers: worked out again only when the pods placed, or what the
        directories they were worked out from hold, changed (a listing each)."""
        placement = tuple((p.cgroup, p.tier) for p in topo.placed)
        known = self._known
        if (
            known is None
            or known.placement != placement
            or any(listed(d) != held for d, held in known.listings.items())
        ):
            listings: dict[str, list[str] | None] = {}

            def recorded(cgroup: str) -> list[str] | None:
                listings[cgroup] = listed(cgroup)
                return listings[cgroup]

            known = _KnownCovers(placement, listings, TierCovers.of(topo, recorded))
            self._known = known
        return known.covers

    def _memory(
        self,
        at: float,
        node: CgroupSample | None,
        covers: TierCovers,
        tiers: dict[str, CgroupSample | None],
    ) -> MemoryReading:
        def usage(cgroup: str) -> float | None:
            s = tiers.get(cgroup)
            return None if s is None else s.memory.usage_bytes

        def working_set(cgroup: str) -> float | None:
            s = tiers.get(cgroup)
            return None if s is None else s.memory.working_set_bytes

        node_ws = None if node is None else node.memory.working_set_bytes
        if node_ws is None and self.node_cgroup == "":
            # The v2 root has no memory.current: the host's own count (total - available).
            vm = psutil.virtual_memory()
            node_ws = vm.total - vm.available
        pods_ws = _signed(covers.pods, working_set)
        system = None
        if node_ws is not None and pods_ws is not None:
            system = max(0.0, node_ws - pods_ws)
        return MemoryReading(
            at,
            node_working_set_bytes=node_ws,
            system_working_set_bytes=system,
            online_memory_bytes=_signed(covers.resident, usage),
            batch_working_set_bytes=_signed(covers.batch, working_set),
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

    def _throttling(self, at: float, online: list[CgroupSample]) -> ThrottleReading | None:
        counts = {s.cgroup: (s.cpu.periods, s.cpu.throttled_periods) for s in online}
        _, before = self._throttled.step(at, counts)
        periods = throttled = 0
        for cgroup, (p_now, t_now) in counts.items():
            old = before.get(cgroup)
            if old is None:
                return None
            p = _delta(p_now, old[0])
            t = _delta(t_now, old[1])
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
            s.cgroup: (s.cpu.usage_ns,)
            for s in self.cgroups.sample_many(cover.reads, FAST_USAGE)
            if s is not None
        }
        at = self.clock()
        since = self._fast.at
        dt, before = self._fast.step(at, usage)
        if dt is None or since is None:
            return None
        # None when a cgroup came or went: no interval for the sum.
        used = _signed(cover, _rates(usage, before, dt))
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
