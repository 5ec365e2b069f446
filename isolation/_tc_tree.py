"""The HTB tree colocd keeps on one device, in kernel units, and the plan that turns what a
device carries into what is desired. Pure: the netlink side is `_tc_netlink`.

The tree on a device (egress of the uplink: root c01d:; its ifb, for ingress: root c01e:):

    htb c01d: (default → one tier class)
     ├── c01d:1   the root rate, below the true link rate so the node owns the bottleneck
     │    ├── c01d:<tier>   rate/ceil/prio per tier, with a bfifo leaf <tier>:
     │    └── ...
     └── c01e:2   (the ifb only, when it is fed from the pods' side) traffic that never
                  crossed the uplink: pod to pod, node to pod; not held to the link rate
    u32 filters at prio 1 on c01d:, one per pod IP (source IP on egress, destination on ingress)

The two roots differ so that a tier mark (skb->priority = a class id) names one device's
class: a packet marked for the uplink's c01d:30 that passes the ifb (pod to pod) finds no
c01d:30 there and goes to the ifb's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import NamedTuple

# "c01d:" rather than the usual "1:", so colocd's tree is told apart from a hand-made one.
ROOT_HANDLE = 0xC01D0000
PARENT_CLASSID = ROOT_HANDLE | 0x1
INGRESS_ROOT_HANDLE = 0xC01E0000
LOCAL_MINOR = 0x2
FILTER_PRIO = 1
# u32 filter handles are "800::<node>": hash table 0x800, bucket 0, node 1..0xfff.
U32_TABLE = 0x800 << 20
MAX_FILTERS = 0xFFF
# HTB burst/cburst: at least one 64 kB GSO packet (tc's ~1.6 kB default cost a capped class
# ~20 % of its cap here), and at least 1 ms worth at high rates.
MIN_BURST_BYTES = 64 * 1024
# Explicit quantum, inside the range the kernel accepts without a warning (tc's r2q of 10).
MIN_QUANTUM_BYTES = 1600
MAX_QUANTUM_BYTES = 200_000


def classid(minor: int, root: int = ROOT_HANDLE) -> int:
    return root | minor


def leaf_handle(class_id: int) -> int:
    """The bfifo under class c01d:N gets handle N: (unique on the device, easy to read)."""
    return (class_id & 0xFFFF) << 16


def filter_handle(node: int) -> int:
    return U32_TABLE | node


def burst_bytes(rate: int) -> int:
    """Burst in bytes for a rate in bytes/s."""
    return max(MIN_BURST_BYTES, rate // 1000)


def quantum_bytes(rate: int) -> int:
    return min(max(rate // 10, MIN_QUANTUM_BYTES), MAX_QUANTUM_BYTES)


def handle_str(handle: int) -> str:
    """As tc prints it: c01d: for a qdisc, c01d:40 for a class."""
    minor = handle & 0xFFFF
    return f"{handle >> 16:x}:{minor:x}" if minor else f"{handle >> 16:x}:"


class HtbClass(NamedTuple):
    parent: int
    rate: int  # bytes/s
    ceil: int  # bytes/s
    buffer: int  # kernel ticks: burst_bytes(rate) sent at `rate`
    cbuffer: int  # kernel ticks: burst_bytes(ceil) sent at `ceil`
    prio: int
    quantum: int  # bytes


class PodFilter(NamedTuple):
    """A u32 filter on colocd's root; `ip` is None when it matches anything but one /32 at
    the expected offset (such a filter is not colocd's and gets removed)."""

    ip: IPv4Address | None
    class_id: int


class DesiredTree(NamedTuple):
    default_minor: int
    classes: Mapping[int, HtbClass]  # class id → class, the parent c01d:1 included
    leaf_limits: Mapping[int, int]  # tier class id → bfifo limit in bytes
    routes: Mapping[IPv4Address, int]  # pod IP → tier class id
    root: int = ROOT_HANDLE


class ObservedTree(NamedTuple):
    default_minor: int
    classes: Mapping[int, HtbClass]
    leaf_limits: Mapping[int, int | None]  # None: a leaf colocd did not put there
    filters: Mapping[int, PodFilter]  # u32 handle → filter


EMPTY = ObservedTree(default_minor=0, classes={}, leaf_limits={}, filters={})


class AddRoot(NamedTuple):
    default_minor: int
    root: int = ROOT_HANDLE

    def describe(self) -> tuple[str, str]:
        return "add", f"qdisc htb {handle_str(self.root)}"


class DeleteRoot(NamedTuple):
    root: int = ROOT_HANDLE

    def describe(self) -> tuple[str, str]:
        return "delete", f"qdisc htb {handle_str(self.root)}"


class PutClass(NamedTuple):
    class_id: int
    htb: HtbClass
    new: bool

    def describe(self) -> tuple[str, str]:
        return ("add" if self.new else "change"), f"class {handle_str(self.class_id)}"


class DeleteClass(NamedTuple):
    class_id: int

    def describe(self) -> tuple[str, str]:
        return "delete", f"class {handle_str(self.class_id)}"


class PutLeaf(NamedTuple):
    class_id: int
    limit: int

    def describe(self) -> tuple[str, str]:
        return "replace", f"qdisc bfifo {handle_str(leaf_handle(self.class_id))}"


class PutFilter(NamedTuple):
    handle: int
    ip: IPv4Address
    class_id: int
    new: bool

    def describe(self) -> tuple[str, str]:
        action = "add" if self.new else "replace"
        return action, f"filter {self.ip} → {handle_str(self.class_id)}"


class DeleteFilter(NamedTuple):
    handle: int

    def describe(self) -> tuple[str, str]:
        return "delete", f"filter 800::{self.handle & 0xFFF:x}"


TreeOp = AddRoot | DeleteRoot | PutClass | DeleteClass | PutLeaf | PutFilter | DeleteFilter


def plan(desired: DesiredTree, observed: ObservedTree | None) -> list[TreeOp]:
    """The operations, in a safe order, that turn `observed` (None: no colocd tree) into
    `desired`. Classes come before the filters that point at them; filters are moved off a
    class before it is deleted. HTB cannot change its default class in place, so a new
    default rebuilds the tree."""
    ops: list[TreeOp] = []
    if observed is None or observed.default_minor != desired.default_minor:
        if observed is not None:
            ops.append(DeleteRoot(desired.root))
        ops.append(AddRoot(desired.default_minor, desired.root))
        observed = EMPTY
    for cid in sorted(desired.classes):
        have = observed.classes.get(cid)
        if have != desired.classes[cid]:
            ops.append(PutClass(cid, desired.classes[cid], new=have is None))
    for cid in sorted(desired.leaf_limits):
        if observed.leaf_limits.get(cid) != desired.leaf_limits[cid]:
            ops.append(PutLeaf(cid, desired.leaf_limits[cid]))
    ops.extend(_plan_filters(desired.routes, observed.filters))
    ops.extend(DeleteClass(cid) for cid in _stale_classes(observed.classes, desired.classes))
    return ops


def _plan_filters(
    routes: Mapping[IPv4Address, int], filters: Mapping[int, PodFilter]
) -> list[TreeOp]:
    kept: dict[IPv4Address, int] = {}
    for handle in sorted(filters):
        ip = filters[handle].ip
        if ip is not None and ip in routes and ip not in kept:
            kept[ip] = handle
    # Filters no longer wanted are rewritten in place for new IPs before fresh handles are
    # taken: one replace instead of a delete and an add, and no moment without a filter.
    spare = sorted(set(filters) - set(kept.values()))
    taken = set(filters)
    fresh = (filter_handle(n) for n in range(1, MAX_FILTERS + 1) if filter_handle(n) not in taken)
    ops: list[TreeOp] = []
    for ip in sorted(routes):
        cid = routes[ip]
        if ip in kept:
            if filters[kept[ip]].class_id != cid:
                ops.append(PutFilter(kept[ip], ip, cid, new=False))
        elif spare:
            ops.append(PutFilter(spare.pop(0), ip, cid, new=False))
        else:
            ops.append(PutFilter(next(fresh), ip, cid, new=True))
    ops.extend(DeleteFilter(handle) for handle in spare)
    return ops


def _stale_classes(observed: Mapping[int, HtbClass], desired: Mapping[int, HtbClass]) -> list[int]:
    """Observed classes that are not desired; a class whose child is also stale goes last."""
    stale = [cid for cid in observed if cid not in desired]
    parents = {observed[cid].parent for cid in stale}
    return sorted(stale, key=lambda cid: (cid in parents, cid))
