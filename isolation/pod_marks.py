"""Tier marks on pod traffic, set where the pod's own address is still visible.

An nftables table `inet colocd` holds, per tier, a set of pod IPv4 and one of IPv6
addresses, and one chain on the forward hook that sets each forwarded packet's
`meta priority` (skb->priority) from the set its destination address is in (a download:
the ifb's class, c01e:) and then from the set its source address is in (an upload: the
uplink's class, c01d:):

    table inet colocd
      set online_v4 { type ipv4_addr; elements = { 10.1.2.3, ... } }
      set online_v6 { type ipv6_addr; ... }   ...one pair per tier
      chain mark { type filter hook forward priority mangle; policy accept;
                   ip daddr @online_v4 meta priority set c01e:30  ...
                   ip saddr @online_v4 meta priority set c01d:30  ... }

A packet between two pods of the node matches both, and keeps the uplink's mark, which the
ifb's tree has no class for: it passes the ifb in its default class, not held to the link.

HTB sends a packet whose priority equals one of its leaf class ids straight to that class,
with no filter at all, so the uplink's shaper needs no classifier the kernel may lack (this
kernel has no fw, cgroup or flower classifier and no u32 mark match) and works the same on
kernels that have them. The priority travels with the skb through SNAT (postrouting, after
this hook) and through a VXLAN device (the outer packet is the same skb); `ip_forward` resets
priority from the TOS before the forward hook, which is why the mark is set in it.

`PodMarker.apply` lists the table and changes only what differs (set elements added or
removed one by one, in one transaction), so pods coming and going cost one small batch. A
table under colocd's name with anything else in it is someone else's: apply refuses
(ForeignStateError) unless told to take it over.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, NamedTuple

from isolation._net_errors import ForeignStateError
from isolation._nft import Nft
from isolation._tc_tree import handle_str
from qos.tiers import Tier

__all__ = ["FAMILY", "TABLE", "MarkReport", "Marking", "PodMarker"]

FAMILY = "inet"
TABLE = "colocd"
CHAIN = "mark"
# mangle (-150): ahead of any filtering in forward, long before SNAT in postrouting (100).
CHAIN_PRIO = -150
PodIP = IPv4Address | IPv6Address


class Marking(NamedTuple):
    """The desired marks: per tier, the priority its packets get and its pods' IPs."""

    priorities: Mapping[Tier, int]
    ips: Mapping[Tier, frozenset[PodIP]]
    # Per tier, the priority of packets *to* its pods (none: downloads are not marked).
    ingress: Mapping[Tier, int] = {}


class MarkReport(NamedTuple):
    added: int
    removed: int
    rebuilt: bool  # the table or its rules were (re)created

    @property
    def changed(self) -> bool:
        return self.rebuilt or bool(self.added or self.removed)


def _set_name(tier: Tier, version: int) -> str:
    return f"{tier}_v{version}"


def _rule_expr(tier: Tier, version: int, priority: int, field: str) -> list[dict[str, Any]]:
    proto = "ip" if version == 4 else "ip6"
    return [
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": proto, "field": field}},
                "right": f"@{_set_name(tier, version)}",
            }
        },
        {"mangle": {"key": {"meta": {"key": "priority"}}, "value": handle_str(priority)}},
    ]


def _obj(kind: str, **fields: Any) -> dict[str, Any]:
    return {kind: {"family": FAMILY, "table": TABLE, **fields}}


class _Listed(NamedTuple):
    sets: dict[str, frozenset[PodIP]]
    rules: list[list[dict[str, Any]]]
    chains: list[str]
    other: list[str]  # objects colocd never creates (maps, flowtables, counters...)


class PodMarker:
    """Keeps `inet colocd` in the caller's network namespace as desired."""

    def __init__(self) -> None:
        self._nft = Nft()
        # The sets as this object last left them: lets a change skip listing the table.
        self._known: tuple[Marking, dict[str, frozenset[PodIP]]] | None = None

    def close(self) -> None:
        self._nft.close()

    def __enter__(self) -> PodMarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def present(self) -> bool:
        return self._list() is not None

    def foreign(self) -> str | None:
        """Why the table under colocd's name is not colocd's, or None (absent or ours)."""
        listed = self._list()
        if listed is None:
            return None
        extra = [f"chain {c}" for c in listed.chains if c != CHAIN] + listed.other
        extra += [f"set {s}" for s in listed.sets if not _known_set(s)]
        if extra:
            return f"table {FAMILY} {TABLE} holds {', '.join(sorted(extra))}, not colocd's"
        return None

    def apply(self, marking: Marking, take_over: bool = False, verify: bool = True) -> MarkReport:
        """Converge the table on `marking`. `verify` False trusts what this object last
        applied (same priorities) and sends only the set elements that differ, without
        listing the table: the cheap path for pods coming and going between full checks."""
        if (
            not verify
            and self._known is not None
            and self._known[0].priorities == marking.priorities
            and self._known[0].ingress == marking.ingress
        ):
            return self._apply_elements(marking, self._known[1])
        why = self.foreign()
        if why is not None:
            if not take_over:
                raise ForeignStateError(f"nftables {FAMILY} {TABLE}", why)
            self.clear()
        listed = self._list()
        want_rules = _wanted_rules(marking)
        want_sets = _wanted_sets(marking)
        cmds: list[dict[str, Any]] = []
        rebuilt = listed is None or listed.rules != want_rules or set(listed.sets) != set(want_sets)
        if rebuilt:
            # Rebuild in one transaction: delete (if there) and create the whole table.
            if listed is not None:
                cmds.append({"delete": {"table": {"family": FAMILY, "name": TABLE}}})
            cmds.append({"add": {"table": {"family": FAMILY, "name": TABLE}}})
            for name in sorted(want_sets):
                kind = "ipv4_addr" if name.endswith("v4") else "ipv6_addr"
                cmds.append({"add": _obj("set", name=name, type=kind)})
            cmds.append({"add": _obj(
                "chain", name=CHAIN, type="filter", hook="forward", prio=CHAIN_PRIO,
                policy="accept",
            )})  # fmt: skip
            cmds += [{"add": _obj("rule", chain=CHAIN, expr=expr)} for expr in want_rules]
            have_sets: Mapping[str, frozenset[PodIP]] = {}
        else:
            assert listed is not None
            have_sets = listed.sets
        return self._apply_elements(marking, have_sets, cmds, rebuilt)

    def _apply_elements(
        self,
        marking: Marking,
        have_sets: Mapping[str, frozenset[PodIP]],
        cmds: list[dict[str, Any]] | None = None,
        rebuilt: bool = False,
    ) -> MarkReport:
        cmds = [] if cmds is None else cmds
        want_sets = _wanted_sets(marking)
        added = removed = 0
        for name, want in sorted(want_sets.items()):
            have = have_sets.get(name, frozenset())
            gone, new = sorted(have - want), sorted(want - have)
            if gone:
                cmds.append({"delete": _obj("element", name=name, elem=[str(i) for i in gone])})
            if new:
                cmds.append({"add": _obj("element", name=name, elem=[str(i) for i in new])})
            added, removed = added + len(new), removed + len(gone)
        self._known = None  # unknown until the transaction is through
        self._nft.run(cmds, "reconcile", f"table {FAMILY} {TABLE}")
        self._known = (marking, want_sets)
        return MarkReport(added, removed, rebuilt)

    def clear(self) -> bool:
        """Delete the table; False when it was not there."""
        if self._list() is None:
            return False
        self._known = None
        cmd = {"delete": {"table": {"family": FAMILY, "name": TABLE}}}
        self._nft.run([cmd], "delete", f"table {FAMILY} {TABLE}")
        return True

    def elements(self) -> dict[str, frozenset[PodIP]]:
        """The sets and their addresses, as the kernel has them ({} when absent)."""
        listed = self._list()
        return {} if listed is None else dict(listed.sets)

    def _list(self) -> _Listed | None:
        tables = self._nft.run(
            [{"list": {"tables": {"family": FAMILY}}}], "list", f"tables {FAMILY}"
        )
        if not any(o.get("table", {}).get("name") == TABLE for o in tables):
            return None
        objs = self._nft.run(
            [{"list": {"table": {"family": FAMILY, "name": TABLE}}}],
            "list",
            f"table {FAMILY} {TABLE}",
        )
        listed = _Listed({}, [], [], [])
        for obj in objs:
            (kind, body), *_ = obj.items()
            if kind in ("metainfo", "table"):
                continue
            if kind == "set":
                listed.sets[body["name"]] = frozenset(_elements(body.get("elem", [])))
            elif kind == "chain":
                listed.chains.append(body["name"])
            elif kind == "rule":
                listed.rules.append(body["expr"])
            else:
                listed.other.append(f"{kind} {body.get('name', '?')}")
        return listed


def _wanted_rules(marking: Marking) -> list[list[dict[str, Any]]]:
    """Destination rules first, so that the source's mark wins for pod-to-pod packets."""
    rules = []
    for field, priorities in (("daddr", marking.ingress), ("saddr", marking.priorities)):
        for tier in sorted(priorities, key=list(Tier).index):
            rules += [_rule_expr(tier, v, priorities[tier], field) for v in (4, 6)]
    return rules


def _wanted_sets(marking: Marking) -> dict[str, frozenset[PodIP]]:
    return {
        _set_name(tier, v): frozenset(ip for ip in marking.ips.get(tier, ()) if ip.version == v)
        for tier in marking.priorities
        for v in (4, 6)
    }


def _known_set(name: str) -> bool:
    tier, _, version = name.rpartition("_")
    return tier in {str(t) for t in Tier} and version in ("v4", "v6")


def _elements(elems: list[Any]) -> list[PodIP]:
    # Plain addresses list as strings; an element with options lists as {"elem": {...}}.
    out = []
    for e in elems:
        value = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
        out.append(ip_address(value))
    return out
