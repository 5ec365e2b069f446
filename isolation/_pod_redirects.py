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
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from typing import NamedTuple

from isolation._net_errors import ForeignStateError, NetlinkOperationError
from isolation._tc_netlink import (
    CLSACT_EGRESS,
    CLSACT_INGRESS,
    POD_REDIRECT_PRIO,
    TC_H_INGRESS,
    IngressFilter,
    Netlink,
)

# (device, action, target), as isolation.network reports changes.
Change = tuple[str, str, str]


class _Observed(NamedTuple):
    index: int
    clsact: bool
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

    def observe(self, want: frozenset[str]) -> dict[str, _Observed]:
        """What every device carries; raises ForeignStateError when a device in `want`
        carries an ingress qdisc, which leaves no room for a clsact (checked before any
        change is made)."""
        observed = self._observe()
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
        return changes

    def update(self, ifb: str, ifb_index: int, want: frozenset[str]) -> list[Change]:
        """The cheap path between full checks: only devices added to or dropped from what
        this object last left are touched (converge when it knows nothing yet)."""
        if self._known is None:
            return self.converge(ifb, ifb_index, want, self.observe(want))
        known, self._known = set(self._known), None  # unknown until this is through
        changes: list[Change] = []
        for name in sorted(known - want):
            index = self._nl.link_index(name)
            if index is not None:  # a pod's veth goes with the pod
                changes += self._unredirect(name, index)
            known.discard(name)
        for name in sorted(want - known):
            index = self._nl.link_index(name)
            if index is None:
                continue
            kinds = {q.kind for q in self._nl.qdiscs(name, index) if q.parent == TC_H_INGRESS}
            if "ingress" in kinds:
                raise ForeignStateError(
                    name, "it carries an ingress qdisc, so colocd cannot add its clsact"
                )
            o = _Observed(index, "clsact" in kinds, False, None)
            changes += self._redirect(name, o, ifb, ifb_index)
            known.add(name)
        self._known = frozenset(known)
        return changes

    def clear(self, owned: Iterable[str] = ()) -> list[Change]:
        """Remove colocd's redirect from every device, and the clsacts colocd added (this
        object's, and `owned`: from a journal) once nothing else is on them."""
        self.owned |= set(owned)
        changes: list[Change] = []
        for name, o in sorted(self._observe().items()):
            if o.redirect_to is not None:
                changes += self._unredirect(name, o.index)
            elif o.clsact and name in self.owned and not self._filters(name, o.index):
                changes += self._drop_clsact(name, o.index)
        self._known = frozenset()
        self.owned.clear()
        return changes

    # --- steps -----------------------------------------------------------------------------

    def _observe(self) -> dict[str, _Observed]:
        names = self._nl.link_names()
        qdiscs = self._nl.all_qdiscs()
        found = {}
        for index, name in names.items():
            kinds = {q.kind for q in qdiscs.get(index, ()) if q.parent == TC_H_INGRESS}
            redirect_to = None
            if "clsact" in kinds:
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
            if self._journal is not None:
                self._journal(frozenset(self.owned))
            self._nl.add_clsact(name, o.index)
            changes.append((name, "add", "qdisc clsact"))
        if o.redirect_to is not None:  # to another device: replaced
            self._nl.delete_pod_redirect(name, o.index)
            changes.append((name, "delete", "redirect to the ifb"))
        self._nl.add_pod_redirect(name, o.index, ifb, ifb_index)
        changes.append((name, "add", f"redirect to {ifb}"))
        return changes

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
