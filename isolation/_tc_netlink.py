"""pyroute2 backend of uplink shaping: reads what a device carries into `_tc_tree` records and
carries out operations on it. Every NetlinkError is translated here, and nowhere else, into
`NetlinkOperationError` naming the device and the object.

Two pyroute2 0.9 gaps are bridged here: it has no `bfifo` plugin (an unknown kind is sent to
the root with no options), and it decodes u32 keys one field off on dump, so the keys are
read from the raw attribute (struct tc_u32_sel, then struct tc_u32_key).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import types
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv6Address
from typing import Any, NamedTuple

from pyroute2 import IPRoute
from pyroute2.netlink import nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import plugins as tc_plugins
from pyroute2.netlink.rtnl.tcmsg.common import calc_xmittime
from pyroute2.protocols import ETH_P_ALL, ETH_P_IP

from isolation._net_errors import LinkNotFoundError, NetlinkOperationError
from isolation._tc_tree import (
    FILTER_PRIO,
    AddRoot,
    DeleteClass,
    DeleteFilter,
    DeleteRoot,
    HtbClass,
    ObservedTree,
    PodFilter,
    PutClass,
    PutFilter,
    PutLeaf,
    TreeOp,
    burst_bytes,
    filter_handle,
    leaf_handle,
    quantum_bytes,
)

INGRESS_HANDLE = 0xFFFF0000
TC_H_INGRESS = 0xFFFFFFF1  # also where a clsact sits
CLSACT_INGRESS = 0xFFFFFFF2
CLSACT_EGRESS = 0xFFFFFFF3
REDIRECT_HANDLE = filter_handle(1)
# colocd's redirect on a pod-facing device's egress: a prio of its own, so that it is told
# apart from whatever else (a CNI's programs) sits on the same clsact, and runs after them.
POD_REDIRECT_PRIO = 0xC01D
RTN_UNICAST = 1
TCA_EGRESS_REDIR = 1
# An ifb colocd created carries this alias, so that clear() deletes only its own.
IFB_ALIAS = "colocd ingress shaping"
_U32_SEL_HEADER = 4 + 16  # nlattr header + struct tc_u32_sel before the keys
_U32_KEY_MATCH = struct.Struct(">II")  # struct tc_u32_key: mask, val in network order,
_U32_KEY_OFF = struct.Struct("=i")  # then off (host order), then offmask


class _FifoOptions(nla):
    fields = (("limit", "I"),)


# bfifo takes the same struct as pfifo (tc_fifo_qopt); register it as pyroute2 registers its
# own plugins, so that it is sent under its class with its limit, and decoded on dump.
tc_plugins.setdefault(
    "bfifo",
    types.SimpleNamespace(
        parent=TC_H_ROOT,
        options=_FifoOptions,
        get_parameters=lambda kwarg: {"limit": kwarg["limit"]},
    ),
)


IFF_UP = 0x1


class Link(NamedTuple):
    name: str
    kind: str | None  # "ifb", "veth", ...; None for a plain device
    alias: str | None
    up: bool


class Qdisc(NamedTuple):
    kind: str
    handle: int
    parent: int


class IngressFilter(NamedTuple):
    prio: int
    handle: int
    kind: str
    redirect_to: int | None  # ifindex of a mirred egress redirect


class ClassStats(NamedTuple):
    sent_bytes: int
    sent_packets: int
    dropped_packets: int
    overlimits: int
    backlog_bytes: int


def htb_class(parent: int, rate: int, ceil: int, prio: int) -> HtbClass:
    """The class the kernel reports back once colocd has set rate/ceil (bytes/s) and prio."""
    return HtbClass(
        parent=parent,
        rate=rate,
        ceil=ceil,
        buffer=calc_xmittime(rate, burst_bytes(rate)),
        cbuffer=calc_xmittime(ceil, burst_bytes(ceil)),
        prio=prio,
        quantum=quantum_bytes(rate),
    )


@contextmanager
def _translated(action: str, target: str, device: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as err:
        reason = os.strerror(err.code) if err.code > 0 else str(err)
        raise NetlinkOperationError(action, target, device, err.code, reason) from err


class Netlink:
    """One rtnetlink socket, in the caller's network namespace or in `netns`."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        try:
            # flags=0: open an existing namespace, never create one.
            self._ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        except FileNotFoundError as err:
            raise LinkNotFoundError(f"netns {netns}", "no such network namespace") from err

    def close(self) -> None:
        self._ipr.close()

    # --- links ---------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        found = self._ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def require_link(self, name: str) -> int:
        index = self.link_index(name)
        if index is None:
            where = name if self.netns is None else f"{name} in netns {self.netns}"
            raise LinkNotFoundError(f"link {where}", "no such device")
        return index

    def link(self, index: int) -> Link | None:
        """The link with this index, or None if there is none."""
        try:
            with _translated("read", "link", f"ifindex {index}"):
                msg = self._ipr.link("get", index=index)[0]
        except NetlinkOperationError as err:
            if err.errno == errno.ENODEV:
                return None
            raise
        return Link(
            name=msg.get_attr("IFLA_IFNAME"),
            kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            alias=msg.get_attr("IFLA_IFALIAS"),
            up=bool(msg["flags"] & IFF_UP),
        )

    def default_route_device(self) -> str | None:
        for family in (socket.AF_INET, socket.AF_INET6):
            with _translated("read", "default route", "node"):
                routes = self._ipr.get_default_routes(family=family)
            for r in routes:
                oif = r.get_attr("RTA_OIF")
                link = None if oif is None else self.link(oif)
                if link is not None:
                    return link.name
        return None

    def add_ifb(self, name: str) -> int:
        with _translated("add", f"ifb {name}", name):
            self._ipr.link("add", ifname=name, kind="ifb", txqlen=1000)
        index = self.require_link(name)
        with _translated("set", f"ifb {name} up", name):
            self._ipr.link("set", index=index, state="up", ifalias=IFB_ALIAS)
        return index

    def set_up(self, name: str, index: int) -> None:
        with _translated("set", f"link {name} up", name):
            self._ipr.link("set", index=index, state="up")

    def delete_link(self, name: str, index: int) -> None:
        with _translated("delete", f"link {name}", name):
            self._ipr.link("del", index=index)

    # --- reading ---------------------------------------------------------------------------

    def qdiscs(self, device: str, index: int) -> list[Qdisc]:
        with _translated("read", "qdiscs", device):
            msgs = self._ipr.get_qdiscs(index=index)
        return [Qdisc(m.get_attr("TCA_KIND"), m["handle"], m["parent"]) for m in msgs]

    def read_tree(self, device: str, index: int, key_offset: int, root: int) -> ObservedTree:
        """colocd's tree on a device whose root is htb `root` (c01d: or c01e:)."""
        with _translated("read", "htb tree", device):
            qdiscs = list(self._ipr.get_qdiscs(index=index))
            class_msgs = list(self._ipr.get_classes(index=index))
            filter_msgs = list(self._ipr.get_filters(index=index, parent=root))
        top = next(m for m in qdiscs if m["parent"] == TC_H_ROOT)
        default_minor = top.get_nested("TCA_OPTIONS", "TCA_HTB_INIT")["defcls"]
        classes = {
            m["handle"]: _decode_htb_class(m, root)
            for m in class_msgs
            if m["handle"] & 0xFFFF0000 == root and m.get_attr("TCA_KIND") == "htb"
        }
        leaf_limits: dict[int, int | None] = {}
        for m in qdiscs:
            if m["parent"] in classes:
                ours = m.get_attr("TCA_KIND") == "bfifo" and m["handle"] == leaf_handle(m["parent"])
                leaf_limits[m["parent"]] = m.get_attr("TCA_OPTIONS")["limit"] if ours else None
        filters = {}
        for m in filter_msgs:
            if m.get_attr("TCA_KIND") != "u32" or m["info"] >> 16 != FILTER_PRIO:
                continue
            if m["handle"] & 0xFFF == 0:  # the u32 hash table itself, not a filter
                continue
            filters[m["handle"]] = PodFilter(
                ip=_u32_single_ip(m, key_offset),
                class_id=m.get_nested("TCA_OPTIONS", "TCA_U32_CLASSID") or 0,
            )
        return ObservedTree(default_minor, classes, leaf_limits, filters)

    def ingress_filters(self, device: str, index: int, parent: int) -> list[IngressFilter]:
        with _translated("read", "ingress filters", device):
            msgs = list(self._ipr.get_filters(index=index, parent=parent))
        found = []
        for m in msgs:
            if m["handle"] & 0xFFF == 0 and m.get_attr("TCA_KIND") == "u32":
                continue  # u32 hash table entries
            if not m.get_attr("TCA_OPTIONS"):
                continue  # a classifier's header entry, no filter of its own
            found.append(
                IngressFilter(m["info"] >> 16, m["handle"], m.get_attr("TCA_KIND"), _redirect(m))
            )
        return found

    def class_stats(self, device: str, index: int, root: int) -> dict[int, ClassStats]:
        with _translated("read", "class statistics", device):
            msgs = list(self._ipr.get_classes(index=index))
        stats = {}
        for m in msgs:
            s = m.get_attr("TCA_STATS")
            if s is not None and m["handle"] & 0xFFFF0000 == root:
                stats[m["handle"]] = ClassStats(
                    s["bytes"], s["packets"], s["drop"], s["overlimits"], s["backlog"]
                )
        return stats

    # --- writing ---------------------------------------------------------------------------

    def run(self, device: str, index: int, op: TreeOp, key_offset: int, root: int) -> None:
        action, target = op.describe()
        with _translated(action, target, device):
            self._run(index, op, key_offset, root)

    def _run(self, index: int, op: TreeOp, key_offset: int, root: int) -> None:
        ipr = self._ipr
        match op:
            case AddRoot(default_minor, handle):
                ipr.tc("add", "htb", index=index, handle=handle, default=default_minor)
            case DeleteRoot(handle):
                ipr.tc("del", "htb", index=index, handle=handle)
            case PutClass(class_id, htb, new):
                # change-class replaces every parameter: all of them are passed each time.
                ipr.tc(
                    "add-class" if new else "change-class",
                    "htb",
                    index=index,
                    handle=class_id,
                    parent=htb.parent,
                    rate=htb.rate,
                    ceil=htb.ceil,
                    burst=burst_bytes(htb.rate),
                    cburst=burst_bytes(htb.ceil),
                    prio=htb.prio,
                    quantum=htb.quantum,
                )
            case DeleteClass(class_id):
                # No kind: pyroute2 would otherwise build (and fail on) htb class options.
                ipr.tc("del-class", index=index, handle=class_id)
            case PutLeaf(class_id, limit):
                ipr.tc(
                    "replace",
                    "bfifo",
                    index=index,
                    handle=leaf_handle(class_id),
                    parent=class_id,
                    limit=limit,
                )
            case PutFilter(handle, ip, class_id, new):
                key = f"0x{int(ip):08x}/0xffffffff+{key_offset}"
                self._put_u32(index, root, handle, target=class_id, key=key, new=new)
            case DeleteFilter(handle):
                self._delete_u32(index, root, FILTER_PRIO, handle)

    def delete_root(self, device: str, index: int) -> None:
        """Delete whatever root qdisc the device has (the kernel's default takes over)."""
        with _translated("delete", "root qdisc", device):
            self._ipr.tc("del", index=index, parent=TC_H_ROOT)

    def add_ingress(self, device: str, index: int) -> None:
        with _translated("add", "qdisc ingress ffff:", device):
            self._ipr.tc("add", "ingress", index=index, handle=INGRESS_HANDLE)

    def delete_ingress(self, device: str, index: int) -> None:
        with _translated("delete", "qdisc ingress ffff:", device):
            self._ipr.tc("del", "ingress", index=index, handle=INGRESS_HANDLE)

    def put_redirect(self, device: str, index: int, ifb: str, ifb_index: int, new: bool) -> None:
        """Send every IPv4 packet arriving on the device to the ifb, where it is shaped."""
        with _translated("add" if new else "replace", f"redirect to {ifb}", device):
            redirect = {
                "kind": "mirred",
                "direction": "egress",
                "action": "redirect",
                "ifindex": ifb_index,
            }
            self._put_u32(
                index, INGRESS_HANDLE, REDIRECT_HANDLE,
                target=0, key="0x0/0x0+0", new=new, action=redirect,
            )  # fmt: skip

    def delete_redirect(self, device: str, index: int) -> None:
        with _translated("delete", "ingress redirect", device):
            self._delete_u32(index, INGRESS_HANDLE, FILTER_PRIO, REDIRECT_HANDLE)

    # --- pod-facing devices ----------------------------------------------------------------

    def link_names(self) -> dict[int, str]:
        with _translated("read", "links", "node"):
            return {m["index"]: m.get_attr("IFLA_IFNAME") for m in self._ipr.get_links()}

    def all_qdiscs(self) -> dict[int, list[Qdisc]]:
        """Every device's qdiscs, in one dump."""
        found: dict[int, list[Qdisc]] = {}
        with _translated("read", "qdiscs", "node"):
            for m in self._ipr.get_qdiscs():
                found.setdefault(m["index"], []).append(
                    Qdisc(m.get_attr("TCA_KIND"), m["handle"], m["parent"])
                )
        return found

    def route_device(self, ip: IPv4Address | IPv6Address) -> int | None:
        """The ifindex of the device a packet to `ip` leaves by when it is on a directly
        attached link (a pod's veth or bridge): None for an address reached through a
        gateway, a local address, or no route."""
        try:
            with _translated("read", f"route to {ip}", "node"):
                msgs = self._ipr.route("get", dst=str(ip))
        except NetlinkOperationError as err:
            if err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                return None
            raise
        for m in msgs:
            if m["type"] != RTN_UNICAST or m.get_attr("RTA_GATEWAY") or m.get_attr("RTA_VIA"):
                return None
            return m.get_attr("RTA_OIF")
        return None

    def add_clsact(self, device: str, index: int) -> None:
        with _translated("add", "qdisc clsact", device):
            self._ipr.tc("add", "clsact", index=index)

    def delete_clsact(self, device: str, index: int) -> None:
        with _translated("delete", "qdisc clsact", device):
            self._ipr.tc("del", "clsact", index=index)

    def add_pod_redirect(self, device: str, index: int, ifb: str, ifb_index: int) -> None:
        """Send every packet leaving the device (towards its pods) through the ifb, where
        it is shaped by the tier mark it carries, then on its way out of the device. The
        kernel picks the handle: u32's hash tables are shared by both sides of a clsact,
        so a fixed one can clash with another's filter on its ingress side."""
        with _translated("add", f"redirect to {ifb}", device):
            redirect = {
                "kind": "mirred",
                "direction": "egress",
                "action": "redirect",
                "ifindex": ifb_index,
            }
            self._ipr.tc(
                "add-filter", "u32", index=index, parent=CLSACT_EGRESS,
                prio=POD_REDIRECT_PRIO, protocol=ETH_P_ALL, target=0, keys=["0x0/0x0+0"],
                action=redirect,
            )  # fmt: skip

    def delete_pod_redirect(self, device: str, index: int) -> None:
        """Delete colocd's prio on the device's egress (nothing else is at that prio)."""
        with _translated("delete", "redirect to the ifb", device):
            self._ipr.tc(
                "del-filter", "u32", index=index, parent=CLSACT_EGRESS,
                prio=POD_REDIRECT_PRIO, protocol=ETH_P_ALL, target=0,
            )  # fmt: skip

    def _put_u32(
        self,
        index: int,
        parent: int,
        handle: int,
        *,
        target: int,
        key: str,
        new: bool,
        action: dict | None = None,
    ) -> None:
        """A u32 filter with one key, at colocd's prio, IPv4 only."""
        self._ipr.tc(
            "add-filter" if new else "replace-filter",
            "u32",
            index=index,
            parent=parent,
            prio=FILTER_PRIO,
            protocol=ETH_P_IP,
            handle=handle,
            target=target,
            keys=[key],
            **({} if action is None else {"action": action}),
        )

    def _delete_u32(self, index: int, parent: int, prio: int, handle: int) -> None:
        # pyroute2 builds u32 options even for a delete, so it needs a target (ignored).
        self._ipr.tc(
            "del-filter",
            "u32",
            index=index,
            parent=parent,
            prio=prio,
            protocol=ETH_P_IP,
            handle=handle,
            target=0,
        )


def _decode_htb_class(msg: Any, root: int) -> HtbClass:
    parms = msg.get_nested("TCA_OPTIONS", "TCA_HTB_PARMS")
    rate64 = msg.get_nested("TCA_OPTIONS", "TCA_HTB_RATE64")
    ceil64 = msg.get_nested("TCA_OPTIONS", "TCA_HTB_CEIL64")
    return HtbClass(
        # The kernel reports a top-level class's parent as the root; colocd adds it under c01d:.
        parent=root if msg["parent"] == TC_H_ROOT else msg["parent"],
        rate=rate64 or parms["rate"],
        ceil=ceil64 or parms["ceil"],
        buffer=parms["buffer"],
        cbuffer=parms["cbuffer"],
        prio=parms["prio"],
        quantum=parms["quantum"],
    )


def _u32_single_ip(msg: Any, key_offset: int) -> IPv4Address | None:
    """The IPv4 address a u32 filter matches, if it is exactly one /32 at `key_offset`."""
    sel = msg.get_nested("TCA_OPTIONS", "TCA_U32_SEL")
    if sel is None or sel["nkeys"] != 1:
        return None
    start = sel.offset + _U32_SEL_HEADER
    mask, value = _U32_KEY_MATCH.unpack_from(sel.data, start)
    (offset,) = _U32_KEY_OFF.unpack_from(sel.data, start + _U32_KEY_MATCH.size)
    if mask != 0xFFFFFFFF or offset != key_offset:
        return None
    return IPv4Address(value)


def _redirect(msg: Any) -> int | None:
    acts = msg.get_nested("TCA_OPTIONS", "TCA_U32_ACT")
    if acts is None:
        return None
    for _, act in acts["attrs"]:
        if act.get_attr("TCA_ACT_KIND") != "mirred":
            continue
        parms = act.get_nested("TCA_ACT_OPTIONS", "TCA_MIRRED_PARMS")
        if parms is not None and parms["eaction"] == TCA_EGRESS_REDIR:
            return parms["ifindex"]
    return None
