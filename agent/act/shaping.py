"""The network actuator: a `NetworkPlan` onto the node, through `isolation.network` (HTB on
the uplink, ingress through an ifb fed from the pod-facing devices) and
`isolation.pod_marks` (nftables tier marks, by source for uploads and by destination for
downloads).

The pod-facing devices are found by a route lookup of each pod IP (cached while the IP is
in the plan; one that had no direct route is looked up again at every full check), so a
veth per pod and a bridge shared by pods both work.

What it installs is journaled before the first change (`network-journal.json` in the state
directory: the devices, the nftables table, and every pod-facing device whose clsact colocd
added, written before it adds one), so that exactly that is removed on a
reverting stop, by `colocd revert`, and at the next start after a crash. Something in the
way that colocd did not install (a root qdisc, a table under its name) is left alone with a
one-line error, unless the policy says to take it over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import NamedTuple

from isolation import ForeignStateError
from isolation.errors import IsolationError
from isolation.network import (
    INGRESS_ROOT_HANDLE,
    TierShaping,
    TierTraffic,
    UplinkShaper,
    UplinkShaping,
    default_uplink,
    tier_classid,
)
from isolation.pod_marks import FAMILY, TABLE, Marking, PodMarker
from qos.network import SHAPED_TIER, NetworkPlan, NetworkSettings
from qos.tiers import Tier

__all__ = ["JOURNAL", "NetworkActuator", "NetworkApplied", "revert_network"]

log = logging.getLogger(__name__)

JOURNAL = "network-journal.json"
# Tiers served first: system and online at 0, batch after them.
PRIO = {Tier.SYSTEM: 0, Tier.ONLINE: 0, Tier.BATCH: 1}


class NetworkApplied(NamedTuple):
    changes: int  # tc objects added, changed or deleted
    marks_added: int
    marks_removed: int
    error: str | None  # one line; shaping is not in force when set


def _journal_path(state_dir: Path) -> Path:
    return Path(state_dir) / JOURNAL


def _write_journal(state_dir: Path, record: dict) -> None:
    path = _journal_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def revert_network(
    state_dir: Path, shaper: UplinkShaper | None = None, marker: PodMarker | None = None
) -> list[str]:
    """Remove what the journal says colocd installed; returns what was removed (one line
    each). The journal goes once everything is gone; a failure raises and keeps it. Open
    `shaper`/`marker` are used when given (the agent's own), else new ones."""
    path = _journal_path(state_dir)
    if not path.exists():
        return []
    try:
        record = json.loads(path.read_text())
        uplink, ifb = str(record["uplink"]), record.get("ifb")
        clsacts = [str(d) for d in record.get("clsacts", [])]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IsolationError(f"read {path}: {err}") from err
    with contextlib.ExitStack() as stack:
        shaper = shaper or stack.enter_context(UplinkShaper())
        cleared = shaper.clear(uplink, ifb, clsacts).changes
        done = [f"{c.action} {c.target} on {c.device}" for c in cleared]
        if record.get("nft"):
            marker = marker or stack.enter_context(PodMarker())
            if marker.clear():
                done.append(f"delete nftables table {FAMILY} {TABLE}")
    path.unlink(missing_ok=True)
    return done


def _layout(spec: UplinkShaping) -> tuple:
    """Everything of a spec that shapes the trees but its rates (pod IPs do not: they are
    classified by mark): equal layouts differ only in rate/ceil and pod devices."""
    return (
        spec.uplink, spec.ifb, spec.root_rate_bps, spec.default_tier, spec.leaf_limit_bytes,
        tuple((t.tier, t.prio) for t in spec.tiers),
    )  # fmt: skip


def _rates(spec: UplinkShaping) -> tuple:
    return tuple((t.rate_bps, t.ceil_bps) for t in spec.tiers), spec.ingress_ceilings


class NetworkActuator:
    """Applies each tick's plan. Between full checks (every `verify_s`: the tc tree and the
    nftables table read back and converged) a tick whose shaping is unchanged costs nothing
    and pods coming and going cost one nftables transaction of set elements."""

    def __init__(
        self,
        settings: NetworkSettings,
        state_dir: Path,
        dry_run: bool,
        clock: Callable[[], float],
        verify_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.verify_s = verify_s
        self._last: tuple[UplinkShaping, float] | None = None  # spec in force, verified at
        self.state_dir = Path(state_dir)
        self.dry_run = dry_run
        self._uplink: str | None = None
        self._shaper = UplinkShaper(journal=self._journal_clsacts)
        self._marker = PodMarker()
        self._journaled: dict | None = None  # the journal's record, once written
        # Pod IP → the device the node reaches it by (None: not directly attached).
        self._devices: dict[IPv4Address | IPv6Address, str | None] = {}

    @property
    def uplink(self) -> str:
        """The configured device, else the default route's (looked up once, when needed)."""
        if self.settings.uplink is not None:
            return self.settings.uplink
        if self._uplink is None:
            self._uplink = default_uplink()
        return self._uplink

    def reconfigure(self, settings: NetworkSettings) -> list[str]:
        """New settings: what is installed goes first when shaping is turned off or moves
        to other devices; the next apply checks everything."""
        old = self.settings
        self.settings = settings
        self._last = None
        moved = (old.uplink, old.ifb) != (settings.uplink, settings.ifb)
        if self.dry_run or self._journaled is None or (settings.enabled and not moved):
            return []
        self._journaled = None
        self._uplink = None
        self._devices.clear()
        return revert_network(self.state_dir, self._shaper, self._marker)

    def recover(self) -> list[str]:
        """At start: remove what a previous run left behind without reverting (a crash)."""
        if self.dry_run:
            return []
        return revert_network(self.state_dir)

    def spec(self, plan: NetworkPlan) -> UplinkShaping:
        s = self.settings
        tiers = []
        for tier in s.tiers:
            r = plan.rate(tier, "egress")
            ips = plan.ips.get(tier, frozenset())
            tiers.append(TierShaping(tier, r.rate_bps, r.ceil_bps, PRIO[tier], ips))
        spec = UplinkShaping(
            uplink=self.uplink,
            root_rate_bps=s.link_rate_bps,
            tiers=tuple(tiers),
            default_tier=plan.default_tier,
            ifb=s.ifb,
            by_priority=True,
            pod_devices=self._pod_devices(plan) if s.ifb is not None else frozenset(),
        )
        if s.ifb is not None:
            ceilings = tuple((t.tier, plan.rate(t.tier, "ingress").ceil_bps) for t in tiers)
            spec = spec.with_ingress_ceilings(ceilings)
        return spec

    def _pod_devices(self, plan: NetworkPlan) -> frozenset[str]:
        """The devices the node reaches its pods by; new IPs are looked up, gone ones
        forgotten. Host-network pods' addresses are the node's own (no device)."""
        ips = {ip for tier_ips in plan.ips.values() for ip in tier_ips}
        for ip in set(self._devices) - ips:
            del self._devices[ip]
        new = ips - set(self._devices)
        if new:
            self._devices.update(self._shaper.pod_devices(new))
        skip = {self.uplink, self.settings.ifb}
        return frozenset(d for d in self._devices.values() if d is not None and d not in skip)

    def marking(self, plan: NetworkPlan) -> Marking:
        priorities = {t: tier_classid(SHAPED_TIER[t]) for t in Tier if SHAPED_TIER[t] in plan.ips}
        ips = {t: plan.ips.get(SHAPED_TIER[t], frozenset()) for t in priorities}
        # dedicated shares online's class and set: give its own sets nothing.
        ips[Tier.DEDICATED] = frozenset()
        ingress = {}
        if self.settings.ifb is not None:
            ingress = {t: tier_classid(SHAPED_TIER[t], INGRESS_ROOT_HANDLE) for t in priorities}
        return Marking(priorities, ips, ingress)

    def _journal_clsacts(self, devices: frozenset[str]) -> None:
        """Called by the shaper before it adds a clsact to a pod-facing device."""
        if self._journaled is not None:
            self._journaled = {**self._journaled, "clsacts": sorted(devices)}
            _write_journal(self.state_dir, self._journaled)

    def apply(self, plan: NetworkPlan) -> NetworkApplied:
        if self.dry_run:
            return NetworkApplied(0, 0, 0, None)
        take = self.settings.take_over
        now = self.clock()
        verify = self._last is None or now - self._last[1] >= self.verify_s
        if verify:  # pods whose route was not there yet are looked up again
            self._devices = {ip: d for ip, d in self._devices.items() if d is not None}
        try:
            spec = self.spec(plan)
            if self._journaled is None:
                # The table is journaled (so removed later) only when it is colocd's to remove.
                nft = take or self._marker.foreign() is None
                record = {"uplink": spec.uplink, "ifb": spec.ifb, "nft": nft}
                _write_journal(self.state_dir, record)
                self._journaled = record
            # Marks first: a packet marked before its class exists goes to the default.
            # Everything that makes apply refuse is found before the first change.
            why = None if take or not verify else self._marker.foreign()
            if why is not None:
                raise ForeignStateError(f"nftables {FAMILY} {TABLE}", why)
            changes = 0
            last = self._last
            if verify or last is None or _layout(last[0]) != _layout(spec):
                changes = len(self._shaper.apply(spec, take_over=take).changes)
                self._last = (spec, now if verify or last is None else last[1])
            else:
                if _rates(last[0]) != _rates(spec):
                    # The batch ceiling moved: rewrite the classes, read nothing.
                    changes += len(self._shaper.change_rates(spec).changes)
                if last[0].pod_devices != spec.pod_devices:
                    # Pods came or went: redirect only the devices that changed.
                    changes += len(self._shaper.redirect_pods(spec).changes)
                self._last = (spec, last[1])
            # Classes before marks (either order is safe: a packet whose priority names no
            # class goes to the default one).
            marks = self._marker.apply(self.marking(plan), take_over=take, verify=verify)
        except IsolationError as err:
            self._last = None  # check everything again next tick
            return NetworkApplied(0, 0, 0, str(err))
        return NetworkApplied(changes, marks.added, marks.removed, None)

    def traffic(self, plan: NetworkPlan) -> tuple[TierTraffic, ...]:
        """The classes' counters; none while the uplink cannot be found (the error is
        reported by `apply`)."""
        try:
            return self._shaper.traffic(self.spec(plan))
        except IsolationError:
            return ()

    def close(self, revert: bool) -> list[str]:
        done: list[str] = []
        try:
            if revert and not self.dry_run:
                done = revert_network(self.state_dir, self._shaper, self._marker)
        finally:
            self._shaper.close()
            self._marker.close()
        return done
