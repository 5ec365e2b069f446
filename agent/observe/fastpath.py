"""The fast path: between two ticks, watch the online tier and react to a surge at once.

Every `interval_s` (or sooner, when a PSI poll trigger fires) it reads the online tier's
CPU use since the previous read, from the few QoS-level counters of its `Cover`
(`Sampler.online_now`); every `stall_interval_s`, where no trigger is armed, each online
pod's CPU stall too. A surge is online use above what the last tick predicted by more than
`surge_milli`, or an online pod stalled for more than `stall_fraction` of the time since its
stall was read (or a fired trigger). On a surge it calls
`react`, which lets the brain decide again on the fresh reading and clamps batch when the
answer is tighter; the next full tick then takes over. The interval reader always runs:
usage surges show no stall when batch runs as SCHED_IDLE, since online preempts it.

PSI poll triggers are armed on the online pods' `cpu.pressure` files where the kernel
accepts them (`isolation.pressure`); where it refuses (e.g. 1-s windows without
CAP_SYS_RESOURCE) the fast path runs on the interval reader alone and says why (`detail`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from agent.config import FastPathSettings
from agent.observe.cover import Cover
from agent.observe.sampler import OnlineNow, Sampler
from isolation.cgroups import Cgroups
from isolation.pressure import PressureTriggers
from qos.cpus import format_cpus
from qos.plan import CpusetCap, QuotaCap

__all__ = ["FastPath", "Surge", "cap_words", "detect_surge", "tighter"]


class Surge(NamedTuple):
    reading: OnlineNow
    trigger: str  # "usage" | "pressure"
    why: str


def cap_words(cap: CpusetCap | QuotaCap | None) -> str:
    """A CPU cap in a few words, for logs and the status file."""
    match cap:
        case CpusetCap(cpus=cpus):
            return f"batch cpuset {format_cpus(cpus)}"
        case QuotaCap(millicores=m):
            return f"batch quota {m}m"
    return "no CPU cap"


def tighter(
    new: CpusetCap | QuotaCap | None, old: CpusetCap | QuotaCap | None, drop: float
) -> bool:
    """Whether `new` holds batch back more than `old` (the fast path only ever clamps)."""
    match new, old:
        case CpusetCap(cpus=n), CpusetCap(cpus=o):
            return len(n) < len(o)
        case QuotaCap(millicores=n), QuotaCap(millicores=o):
            return n < o * (1 - drop)
    return False


def detect_surge(
    r: OnlineNow, expected_milli: float | None, fired: list[str], s: FastPathSettings
) -> Surge | None:
    """A surge in one fast reading: online use above the tick's prediction by more than
    `surge_milli`, a fired PSI trigger, or an online pod stalled beyond `stall_fraction`."""
    if r.used_milli is not None and expected_milli is not None:
        over = r.used_milli - expected_milli
        if over > s.surge_milli:
            why = f"online CPU {r.used_milli:.0f}m, {over:.0f}m above the tick's prediction"
            return Surge(r, "usage", why)
    if fired:
        return Surge(r, "pressure", f"PSI trigger fired on {len(fired)} online pods")
    if r.stall_fraction is not None and r.stall_fraction > s.stall_fraction:
        return Surge(r, "pressure", f"online pod stalled {r.stall_fraction:.0%} of the time")
    return None


class FastPath:
    def __init__(
        self,
        settings: FastPathSettings,
        cgroups: Cgroups,
        sampler: Sampler,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.sampler = sampler
        self.clock = clock
        self.triggers = (
            PressureTriggers(cgroups, settings.trigger_stall_s, settings.trigger_window_s)
            if settings.psi_triggers
            else None
        )
        self._cover = Cover()
        self._expected: float | None = None
        self._stall_read: float | None = None

    @property
    def mode(self) -> str:
        return "psi-trigger" if self.triggers is not None and self.triggers.armed else "interval"

    @property
    def detail(self) -> str:
        if not self._cover.pods:
            return "waiting: no online pod to watch, or no CPU cap to clamp (batch is cpu.idle)"
        s = self.settings
        every = (
            f"every {s.interval_s * 1000:g} ms ({len(self._cover.reads)} counters for "
            f"{len(self._cover.pods)} online pods; their stalls every "
            f"{s.stall_interval_s * 1000:g} ms)"
        )
        if self.triggers is None:
            return f"interval reader {every} (PSI triggers off)"
        if self.triggers.armed:
            return (
                f"PSI triggers {self.triggers.spec!r} on {self.triggers.armed} online pods, "
                f"and the interval reader {every}"
            )
        if self.triggers.refused:
            return f"interval reader {every}; PSI triggers refused: {self.triggers.refused}"
        return f"interval reader {every} (no online pod to arm a PSI trigger on)"

    def arm(self, cover: Cover, expected_milli: float | None) -> None:
        """After each tick: the online pods to watch, with the counters that sum to their
        use, and the online CPU demand the tick predicted (None: unknown, so only pressure
        counts as a surge)."""
        self._cover = cover
        self._expected = expected_milli
        if self.triggers is not None:
            self.triggers.watch(list(cover.pods))

    def _stall_due(self) -> bool:
        """Whether to read the online pods' own stalls now: never while PSI triggers watch
        them, else every `stall_interval_s`."""
        if self.triggers is not None and self.triggers.armed:
            return False
        now = self.clock()
        last = self._stall_read
        # 1 ms of slack: wake-ups drift, and a read just short of the interval would
        # otherwise wait a whole extra one.
        if last is not None and now - last < self.settings.stall_interval_s - 1e-3:
            return False
        self._stall_read = now
        return True

    def watch(self, deadline: float, stop: threading.Event, react: Callable[[Surge], None]) -> None:
        """Until `deadline` (the loop's clock) or `stop`: read, and `react` to surges."""
        interval = self.settings.interval_s
        if not self._cover.pods:  # nothing to watch until the next tick arms it: no wake-ups
            stop.wait(max(0.0, deadline - self.clock()))
            return
        while not stop.is_set():
            left = deadline - self.clock()
            if left <= 0:
                return
            timeout = min(interval, left)
            fired: list[str] = []
            if self.triggers is not None and self.triggers.armed:
                fired = self.triggers.wait(timeout)
            elif stop.wait(timeout):
                return
            reading = self.sampler.online_now(self._cover, self._stall_due())
            if reading is None:
                continue
            surge = detect_surge(reading, self._expected, fired, self.settings)
            if surge is not None:
                react(surge)
                # Judge the next reads against this one: react again only if it grows.
                if reading.used_milli is not None:
                    self._expected = max(self._expected or 0.0, reading.used_milli)

    def close(self) -> None:
        if self.triggers is not None:
            self.triggers.close()
