"""The network actuator: a `NetworkPlan` onto the node, through `isolation.network` (HTB on
the uplink, ingress through an ifb) and `isolation.pod_marks` (nftables tier marks).

What it installs is journaled before the first change (`network-journal.json` in the state
directory: the devices and the nftables table), so that exactly that is removed on a
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
from pathlib import Path
from typing import NamedTuple

from isolation import ForeignStateError
from isolation.errors import IsolationError
from isolation.network import (
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
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IsolationError(f"read {path}: {err}") from err
    with contextlib.ExitStack() as stack:
        shaper = shaper or stack.enter_context(UplinkShaper())
        done = [f"{c.action} {c.target} on {c.device}" for c in shaper.clear(uplink, ifb).changes]
        if record.get("nft"):
            marker = marker or stack.enter_context(PodMarker())
            if marker.clear():
                done.append(f"delete nftables table {FAMILY} {TABLE}")
    path.unlink(missing_ok=True)
    return done


def _layout(spec: UplinkShaping) -> tuple:
    """Everything of a spec but its rates: equal layouts differ only in rate/ceil."""
    return (
        spec.uplink, spec.ifb, spec.root_rate_bps, spec.default_tier, spec.leaf_limit_bytes,
        tuple((t.tier, t.prio, t.pod_ips) for t in spec.tiers),
    )  # fmt: skip


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
        self._shaper = UplinkShaper()
        self._marker = PodMarker()
        self._journaled = False

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
        if self.dry_run or not self._journaled or (settings.enabled and not moved):
            return []
        self._journaled = False
        self._uplink = None
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
            egress_by_priority=True,
        )
        if s.ifb is not None:
            ceilings = tuple((t.tier, plan.rate(t.tier, "ingress").ceil_bps) for t in tiers)
            spec = spec.with_ingress_ceilings(ceilings)
        return spec

    def marking(self, plan: NetworkPlan) -> Marking:
        priorities = {t: tier_classid(SHAPED_TIER[t]) for t in Tier if SHAPED_TIER[t] in plan.ips}
        ips = {t: plan.ips.get(SHAPED_TIER[t], frozenset()) for t in priorities}
        # dedicated shares online's class and set: give its own sets nothing.
        ips[Tier.DEDICATED] = frozenset()
        return Marking(priorities, ips)

    def apply(self, plan: NetworkPlan) -> NetworkApplied:
        if self.dry_run:
            return NetworkApplied(0, 0, 0, None)
        take = self.settings.take_over
        now = self.clock()
        verify = self._last is None or now - self._last[1] >= self.verify_s
        try:
            spec = self.spec(plan)
            if not self._journaled:
                # The table is journaled (so removed later) only when it is colocd's to remove.
                nft = take or self._marker.foreign() is None
                _write_journal(self.state_dir, {"uplink": spec.uplink, "ifb": spec.ifb, "nft": nft})
                self._journaled = True
            # Marks first: a packet marked before its class exists goes to the default.
            # Everything that makes apply refuse is found before the first change.
            why = None if take or not verify else self._marker.foreign()
            if why is not None:
                raise ForeignStateError(f"nftables {FAMILY} {TABLE}", why)
            changes = 0
            last = self._last
            if (
                last is not None
                and not verify
                and last[0] != spec
                and _layout(last[0]) == _layout(spec)
            ):
                # Only rates moved (the batch ceiling): rewrite the classes, read nothing.
                changes = len(self._shaper.change_rates(spec).changes)
                self._last = (spec, last[1])
            elif verify or last is None or last[0] != spec:
                changes = len(self._shaper.apply(spec, take_over=take).changes)
                self._last = (spec, now if verify or last is None else last[1])
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
