"""Ingress shaping from the pods' side: every packet leaving a pod-facing device (a pod's
veth, or the bridge its veths hang off) is redirected through the ifb, whose HTB classifies
it by the tier mark the nftables forward hook set from its destination pod address.

Why not on the uplink's ingress: there a download is still addressed to the node (SNAT) or
wrapped in an outer UDP packet (VXLAN); only after de-NAT and decapsulation, in the forward
hook, is the pod's address visible, and the packet then leaves by the pod's device.

Per device: a clsact qdisc (colocd's only when it added it; a CNI's is shared) and one u32
match-all filter on its egress, at a prio that is colocd's alone (0xc01d), with a mirred
redirect to the ifb. The
ifb hands each packet back to the device it came from, past this hook.

`PodRedirects.converge` reads every device (one qdisc dump, and the egress filters of those
with a clsact) and changes what differs; `update` trusts what it last left and changes only
the devices that came or went: pods coming and going cost one netlink call or two.

Reading a device's filters costs ~2-4 ms here (pyroute2 decodes the u32 and its action), so a
full check reads them only where they may differ from what colocd last left (a device that
is new, recreated, or lost its clsact) and on a rotating slice of the rest: every redirect
is read back within a few checks, at a bounded cost per check on a node with many pods.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from isolation._net_errors import ForeignStateError, NetlinkOperationError
from isolation._tc_netlink import (
    CLSACT_EGRESS,
    CLSACT_INGRESS,
    POD_REDIRECT_PRIO,
    TC_H_INGRESS,
    IngressFilter,
    Netlink,
    Qdisc,
)

# (device, action, target), as isolation.network reports changes.
Change = tuple[str, str, str]
# Redirects a full check reads back even though they are as colocd left them.
VERIFY_PER_CHECK = 32


class _Observed(NamedTuple):
    index: int
    clsact: bool | None  # None: not read (a device that just came)
    ingress: bool  # a plain ingress qdisc, where a clsact would go
    # The ifindex colocd's redirect points at (-1: it has none that decodes); None: no redirect.
    redirect_to: int | None


def _is_ours(f: IngressFilter) -> bool:
    return f.kind == "u32" and f.prio == POD_REDIRECT_PRIO


class PodRedirects:
    """colocd's redirects on pod-facing devices. `journal` is called with every device whose
    clsact colocd owns, before it adds one, so that a crash leaves a record of it."""

    def __init__(self, nl: Netlink, journal: Callable[[frozenset[str]], None] | None) -> None:
        self._nl = nl
        self._journal = journal
        self.owned: set[str] = set()  # devices whose clsact colocd added
        self._known: frozenset[str] | None = None  # devices redirected, as last left
        # Device → (its ifindex, the ifb's) where colocd's redirect was last left or read.
        self._left: dict[str, tuple[int, int]] = {}
        self._turn = 0  # which slice of `_left` the next full check reads back

    def observe(
        self, want: frozenset[str], qdiscs: Mapping[int, list[Qdisc]]
    ) -> dict[str, _Observed]:
        """What every device carries (`qdiscs`: Netlink.all_qdiscs); raises
        ForeignStateError when a device in `want` carries an ingress qdisc, which leaves no
        room for a clsact (checked before any change is made)."""
        trusted = dict(self._left)
        names = sorted(trusted)
        if names:
            start = self._turn * VERIFY_PER_CHECK % len(names)
            for name in (names + names)[start : start + min(VERIFY_PER_CHECK, len(names))]:
                del trusted[name]
            self._turn += 1
        observed = self._observe(trusted, qdiscs)
        for name in sorted(want & set(observed)):
            if observed[name].ingress:
                raise ForeignStateError(
                    name, "it carries an ingress qdisc, so colocd cannot add its clsact"
                )
        return observed

    def converge(
        self, ifb: str, ifb_index: int, want: frozenset[str], observed: dict[str, _Observed]
    ) -> list[Change]:
        """Redirect exactly the devices in `want` that exist to the ifb; remove colocd's
        redirect everywhere else. `observed`: what `observe` returned."""
        self._known = None  # unknown until this is through
        changes: list[Change] = []
        for name in sorted(want & set(observed)):
            o = observed[name]
            if o.redirect_to != ifb_index:
                changes += self._redirect(name, o, ifb, ifb_index)
        for name in sorted(set(observed) - want):
            if observed[name].redirect_to is not None:
                changes += self._unredirect(name, observed[name].index)
        self._known = frozenset(want & set(observed))
        self._left = {name: (observed[name].index, ifb_index) for name in self._known}
        return changes

    def update(self, ifb: str, ifb_index: int, want: frozenset[str]) -> list[Change]:
        """The cheap path between full checks: only devices added to or dropped from what
        this object last left are touched (converge when it knows nothing yet)."""
        if self._known is None:
            observed = self.observe(want, self._nl.all_qdiscs())
            return self.converge(ifb, ifb_index, want, observed)
        known, self._known = set(self._known), None  # unknown until this is through
        left, self._left = dict(self._left), {}
        changes: list[Change] = []
        for name in sorted(known - want):
            index = self._nl.link_index(name)
            if index is not None:  # a pod's veth goes with the pod
                changes += self._unredirect(name, index)
            known.discard(name)
            left.pop(name, None)
        for name in sorted(want - known):
            index = self._nl.link_index(name)
            if index is None:
                continue
            # Not read: a qdisc dump covers every device, ~1 ms each (see _redirect).
            changes += self._redirect(name, _Observed(index, None, False, None), ifb, ifb_index)
            known.add(name)
            left[name] = (index, ifb_index)
        self._known = frozenset(known)
        self._left = left
        return changes

    def clear(self, owned: Iterable[str] = ()) -> list[Change]:
        """Remove colocd's redirect from every device, and the clsacts colocd added (this
        object's, and `owned`: from a journal) once nothing else is on them."""
        self.owned |= set(owned)
        changes: list[Change] = []
        for name, o in sorted(self._observe({}, self._nl.all_qdiscs()).items()):
            if o.redirect_to is not None:
                changes += self._unredirect(name, o.index)
            elif o.clsact and name in self.owned and not self._filters(name, o.index):
                changes += self._drop_clsact(name, o.index)
        self._known = frozenset()
        self._left = {}
        self.owned.clear()
        return changes

    # --- steps -----------------------------------------------------------------------------

    def _observe(
        self, trusted: Mapping[str, tuple[int, int]], qdiscs: Mapping[int, list[Qdisc]]
    ) -> dict[str, _Observed]:
        """Every device; the filters of those in `trusted` (name → its ifindex, the ifb's)
        are not read when the device still has that ifindex and a clsact."""
        names = self._nl.link_names()
        found = {}
        for index, name in names.items():
            kinds = {q.kind for q in qdiscs.get(index, ()) if q.parent == TC_H_INGRESS}
            redirect_to = None
            left = trusted.get(name)
            if "clsact" in kinds and left is not None and left[0] == index:
                redirect_to = left[1]
            elif "clsact" in kinds:
                egress = self._nl.ingress_filters(name, index, CLSACT_EGRESS)
                ours = [f for f in egress if _is_ours(f)]
                if ours:
                    redirect_to = ours[0].redirect_to if ours[0].redirect_to is not None else -1
            found[name] = _Observed(index, "clsact" in kinds, "ingress" in kinds, redirect_to)
        return found

    def _filters(self, name: str, index: int) -> list[IngressFilter]:
        return [
            f
            for parent in (CLSACT_INGRESS, CLSACT_EGRESS)
            for f in self._nl.ingress_filters(name, index, parent)
        ]

    def _redirect(self, name: str, o: _Observed, ifb: str, ifb_index: int) -> list[Change]:
        changes: list[Change] = []
        if not o.clsact:
            self.owned.add(name)
            self._write_journal()
            try:
                self._nl.add_clsact(name, o.index)
                changes.append((name, "add", "qdisc clsact"))
            except NetlinkOperationError as err:
                # Not read beforehand (o.clsact None), the device has a clsact already, or an
                # ingress qdisc where one would go: either way, not colocd's.
                self.owned.discard(name)
                self._write_journal()
                if o.clsact is not None or err.errno != errno.EEXIST:
                    raise
                kinds = {q.kind for q in self._nl.qdiscs(name, o.index) if q.parent == TC_H_INGRESS}
                if "clsact" not in kinds:
                    raise ForeignStateError(
                        name, "it carries an ingress qdisc, so colocd cannot add its clsact"
                    ) from err
        if o.redirect_to is not None:  # to another device: replaced
            self._nl.delete_pod_redirect(name, o.index)
            changes.append((name, "delete", "redirect to the ifb"))
        self._nl.add_pod_redirect(name, o.index, ifb, ifb_index)
        changes.append((name, "add", f"redirect to {ifb}"))
        return changes

    def _write_journal(self) -> None:
        if self._journal is not None:
            self._journal(frozenset(self.owned))

    def _unredirect(self, name: str, index: int) -> list[Change]:
        try:
            self._nl.delete_pod_redirect(name, index)
        except NetlinkOperationError as err:
            if err.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                return []  # the device (or its clsact) went in the meantime
            raise
        changes: list[Change] = [(name, "delete", "redirect to the ifb")]
        if name in self.owned and not self._filters(name, index):
            changes += self._drop_clsact(name, index)
        return changes

    def _drop_clsact(self, name: str, index: int) -> list[Change]:
        self._nl.delete_clsact(name, index)
        self.owned.discard(name)
        return [(name, "delete", "qdisc clsact")]
