"""Per-tier shaping of a node's uplink: one HTB class per tier, pods classified by IP.

Egress (pods → network) is shaped on the uplink itself, classified by source IP. Ingress
(network → pods) is shaped on an ifb device that every IPv4 packet arriving on the uplink is
redirected to, classified by destination IP. Unclassified traffic goes to the default tier's
class. The root rate must sit below the true link rate so that the queue forms here, where
the tiers are told apart, and not beyond the node.

`by_priority` (what the agent uses) classifies with no filter at all: packets carry their
tier's class id in skb->priority, set by isolation.pod_marks where the pod address is
visible, and ingress is redirected to the ifb from the egress of the pod-facing devices
(`pod_devices`, isolation._pod_redirects) rather than from the uplink's ingress, because
only there, after de-NAT and decapsulation, do downloads carry the pod's address.

`UplinkShaper.apply` diffs the desired `UplinkShaping` against what the kernel carries and
changes only what differs (applying twice changes nothing); `clear` removes exactly what
colocd added. A qdisc colocd did not create is never replaced: apply refuses instead. When the
kernel refuses a change half-way, apply removes colocd's shaping rather than leave online pods
in a wrong class, and raises.

    spec = UplinkShaping(uplink="eth0", ifb="colocd-ifb0", root_rate_bps=9 * 10**9,
                         default_tier=Tier.BATCH, tiers=(...))
    with UplinkShaper() as shaper:
        shaper.apply(spec)
        shaper.apply(spec.with_ceil(Tier.BATCH, 2 * 10**9))   # at runtime
        shaper.clear("eth0")

Errors: see `isolation._net_errors` (NetworkError and its subclasses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from isolation._net_errors import (
    ForeignStateError,
    LinkNotFoundError,
    NetlinkOperationError,
    NetworkError,
    ShapingSpecError,
)
from isolation._pod_redirects import PodRedirects
from isolation._tc_netlink import (
    IFB_ALIAS,
    INGRESS_HANDLE,
    REDIRECT_HANDLE,
    TC_H_INGRESS,
    TC_H_ROOT,
    IngressFilter,
    Link,
    Netlink,
    Qdisc,
    htb_class,
)
from isolation._tc_tree import (
    FILTER_PRIO,
    INGRESS_ROOT_HANDLE,
    LOCAL_MINOR,
    MAX_FILTERS,
    ROOT_HANDLE,
    DeleteRoot,
    DesiredTree,
    PutClass,
    TreeOp,
    classid,
    handle_str,
    plan,
)
from qos.tiers import Tier

# A few hundred kB per leaf: a GSO packet is up to 64 kB, so a pfifo's "100 packets" can be
# megabytes of queue; a byte-limited fifo keeps throughput without a tier's own bufferbloat.
DEFAULT_LEAF_LIMIT_BYTES = 256 * 1024
MIN_LEAF_LIMIT_BYTES = 64 * 1024
MAX_LEAF_LIMIT_BYTES = 64 * 1024 * 1024
# Below 100 kbit/s a 64 kB burst no longer fits HTB's 32-bit tick counters; above, rates
# are only bounded by what a node plausibly has.
MIN_RATE_BPS = 100_000
MAX_RATE_BPS = 1_000_000_000_000
IFNAMSIZ = 15
EGRESS_KEY_OFFSET = 12  # IPv4 source address
INGRESS_KEY_OFFSET = 16  # IPv4 destination address
MAX_PRIO = 7
# The ifb's class for traffic that did not cross the uplink: never the bottleneck.
LOCAL_RATE_BPS = MAX_RATE_BPS


def tier_classid(tier: Tier, root: int = ROOT_HANDLE) -> int:
    """Fixed per tier (c01d:10 system, :20 dedicated, :30 online, :40 batch; c01e: on the
    ifb), so adding or removing a tier never renumbers the others."""
    return classid(0x10 * (list(Tier).index(tier) + 1), root)


@dataclass(frozen=True)
class TierShaping:
    """One tier's class: `rate_bps` guaranteed, up to `ceil_bps` when the link has room;
    spare bandwidth goes to the lowest `prio` first (0 is served first)."""

    tier: Tier
    rate_bps: int
    ceil_bps: int
    prio: int
    pod_ips: frozenset[IPv4Address | IPv6Address] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        name = f"tier {self.tier}"
        if not MIN_RATE_BPS <= self.rate_bps <= self.ceil_bps <= MAX_RATE_BPS:
            raise ShapingSpecError(
                name,
                f"need {MIN_RATE_BPS} <= rate <= ceil <= {MAX_RATE_BPS} bit/s, "
                f"got rate {self.rate_bps} ceil {self.ceil_bps}",
            )
        if not 0 <= self.prio <= MAX_PRIO:
            raise ShapingSpecError(name, f"prio {self.prio} is outside 0..{MAX_PRIO}")
        for ip in self.pod_ips:
            if not isinstance(ip, IPv4Address | IPv6Address):
                raise ShapingSpecError(name, f"pod IP {ip!r} is not an IP address")


@dataclass(frozen=True)
class UplinkShaping:
    """The desired shaping of one uplink. `ifb` None shapes egress only."""

    uplink: str
    root_rate_bps: int
    tiers: tuple[TierShaping, ...]
    default_tier: Tier
    ifb: str | None = None
    leaf_limit_bytes: int = DEFAULT_LEAF_LIMIT_BYTES
    # True: no filters; packets reach their tier's class because something upstream set
    # skb->priority to its class id (isolation.pod_marks), which survives SNAT and
    # encapsulation where an IP filter on the uplink does not. Ingress then comes to the ifb
    # from the egress of `pod_devices`, not from the uplink's ingress.
    by_priority: bool = False
    pod_devices: frozenset[str] = frozenset()
    # Per tier, the ceil on the ifb (ingress) when it differs from the egress one.
    ingress_ceilings: tuple[tuple[Tier, int], ...] = ()

    def __post_init__(self) -> None:
        target = f"uplink {self.uplink}"
        for name in (self.uplink, self.ifb):
            if name is not None and not 0 < len(name) <= IFNAMSIZ:
                raise ShapingSpecError(target, f"device name {name!r} is not 1..15 characters")
        if self.ifb == self.uplink:
            raise ShapingSpecError(target, "the ifb must be another device than the uplink")
        for name in self.pod_devices:
            if not 0 < len(name) <= IFNAMSIZ or name in (self.uplink, self.ifb):
                raise ShapingSpecError(target, f"pod device {name!r} is not a pod-facing name")
        if self.pod_devices and not (self.by_priority and self.ifb):
            raise ShapingSpecError(target, "pod devices need by_priority and an ifb")
        if not MIN_RATE_BPS <= self.root_rate_bps <= MAX_RATE_BPS:
            raise ShapingSpecError(
                target,
                f"root rate {self.root_rate_bps} bit/s is outside {MIN_RATE_BPS}..{MAX_RATE_BPS}",
            )
        if not MIN_LEAF_LIMIT_BYTES <= self.leaf_limit_bytes <= MAX_LEAF_LIMIT_BYTES:
            raise ShapingSpecError(
                target,
                f"leaf limit {self.leaf_limit_bytes} B is outside "
                f"{MIN_LEAF_LIMIT_BYTES}..{MAX_LEAF_LIMIT_BYTES}",
            )
        tiers = [t.tier for t in self.tiers]
        if not tiers or len(set(tiers)) != len(tiers):
            raise ShapingSpecError(target, "give each tier exactly once, and at least one")
        if self.default_tier not in tiers:
            raise ShapingSpecError(target, f"default tier {self.default_tier} has no class")
        for t in self.tiers:
            if t.ceil_bps > self.root_rate_bps:
                raise ShapingSpecError(
                    target, f"tier {t.tier} ceil {t.ceil_bps} exceeds root {self.root_rate_bps}"
                )
        guaranteed = sum(t.rate_bps for t in self.tiers)
        if guaranteed > self.root_rate_bps:
            raise ShapingSpecError(
                target, f"tier rates add up to {guaranteed}, above root {self.root_rate_bps}"
            )
        seen: dict[IPv4Address | IPv6Address, Tier] = {}
        for t in self.tiers:
            for ip in t.pod_ips:
                if ip in seen:
                    raise ShapingSpecError(target, f"pod IP {ip} is in {seen[ip]} and {t.tier}")
                seen[ip] = t.tier
        if len(seen) > MAX_FILTERS:
            raise ShapingSpecError(target, f"{len(seen)} pod IPs, at most {MAX_FILTERS}")

    def tier(self, tier: Tier) -> TierShaping:
        for t in self.tiers:
            if t.tier is tier:
                return t
        raise ShapingSpecError(f"uplink {self.uplink}", f"tier {tier} has no class")

    def with_ingress_ceilings(self, ceilings: tuple[tuple[Tier, int], ...]) -> UplinkShaping:
        spec = replace(self, ingress_ceilings=ceilings)
        spec.ingress()  # validates them
        return spec

    def ingress(self) -> UplinkShaping:
        """The spec the ifb's tree is built from."""
        spec = replace(self, ingress_ceilings=())
        for tier, ceil in self.ingress_ceilings:
            spec = spec.with_ceil(tier, ceil)
        return spec

    def with_ceil(self, tier: Tier, ceil_bps: int) -> UplinkShaping:
        """The same shaping with `tier`'s ceil changed (e.g. batch's, at runtime)."""
        tiers = tuple(replace(t, ceil_bps=ceil_bps) if t.tier is tier else t for t in self.tiers)
        self.tier(tier)
        return replace(self, tiers=tiers)


class ShapingChange(NamedTuple):
    device: str
    action: str  # add, change, replace, delete
    target: str  # e.g. "class c01d:40 (batch)"


class ShapingReport(NamedTuple):
    changes: tuple[ShapingChange, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class TierTraffic(NamedTuple):
    """Counters of one tier's class in one direction; None where the class is missing."""

    tier: Tier
    direction: str  # "egress" (on the uplink) or "ingress" (on the ifb)
    device: str
    sent_bytes: int | None
    sent_packets: int | None
    dropped_packets: int | None
    overlimits: int | None
    backlog_bytes: int | None


def desired_tree(spec: UplinkShaping, root: int = ROOT_HANDLE) -> DesiredTree:
    """The tree on the uplink (root c01d:) or on the ifb (c01e:). Fed from the pods' side,
    the ifb also carries traffic that never crossed the uplink (pod to pod, node to pod: no
    ingress mark): its default is then a class of its own, beside the link's."""
    root_rate = spec.root_rate_bps // 8
    parent = classid(1, root)
    classes = {parent: htb_class(root, root_rate, root_rate, prio=0)}
    routes = {}
    leaf_limits = {}
    for t in spec.tiers:
        cid = tier_classid(t.tier, root)
        classes[cid] = htb_class(parent, t.rate_bps // 8, t.ceil_bps // 8, t.prio)
        leaf_limits[cid] = spec.leaf_limit_bytes
        if not spec.by_priority:
            # u32 keys here match IPv4 addresses only; IPv6 pods are classified by priority.
            routes.update(dict.fromkeys((ip for ip in t.pod_ips if ip.version == 4), cid))
    default_minor = tier_classid(spec.default_tier) & 0xFFFF
    if root == INGRESS_ROOT_HANDLE and spec.by_priority:
        local = classid(LOCAL_MINOR, root)
        classes[local] = htb_class(root, LOCAL_RATE_BPS // 8, LOCAL_RATE_BPS // 8, prio=0)
        leaf_limits[local] = spec.leaf_limit_bytes
        default_minor = LOCAL_MINOR
    return DesiredTree(default_minor, classes, leaf_limits, routes, root)


class _Device(NamedTuple):
    """A device a tree goes on, its tree's root, and where its u32 filters look for the pod
    IP."""

    name: str
    index: int
    key_offset: int
    root: int = ROOT_HANDLE


class _Ingress(NamedTuple):
    """The uplink's ingress side: colocd's redirect (the ifindex it points at, or None when
    there is no redirect) and how many filters there are that are not colocd's."""

    redirect_to: int | None
    others: int


class UplinkShaper:
    """Applies `UplinkShaping` through rtnetlink, in the caller's network namespace or in
    `netns` (a name under /var/run/netns). `journal` is called with the pod-facing devices
    whose clsact colocd owns, before it adds one (see isolation._pod_redirects)."""

    def __init__(
        self,
        netns: str | None = None,
        journal: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._nl = Netlink(netns)
        self._pods = PodRedirects(self._nl, journal)
        self._changes: list[ShapingChange] = []

    def close(self) -> None:
        self._nl.close()

    def __enter__(self) -> UplinkShaper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self, spec: UplinkShaping, take_over: bool = False) -> ShapingReport:
        """Converge; `take_over` deletes a root qdisc colocd did not create on the uplink
        (the kernel's default comes back when colocd's is removed) instead of refusing."""
        nl = self._nl
        uplink = nl.require_link(spec.uplink)
        ifb = None if spec.ifb is None else nl.link_index(spec.ifb)
        from_pods = spec.by_priority and spec.ifb is not None
        self._changes = []
        qdiscs = nl.all_qdiscs()  # one dump covers every device (a device's own is as dear)
        # Everything that makes apply refuse is checked before the first change.
        try:
            egress_ours = self._root_is_ours(spec.uplink, uplink, ROOT_HANDLE, qdiscs=qdiscs)
        except ForeignStateError:
            if not take_over:
                raise
            nl.delete_root(spec.uplink, uplink)
            self._note(spec.uplink, "delete", "foreign root qdisc (taken over)")
            egress_ours = False
        ifb_ours = False
        if spec.ifb is not None and ifb is not None:
            kind = _require(nl.link(ifb), spec.ifb).kind
            if kind != "ifb":
                raise ForeignStateError(spec.ifb, f"it is a {kind or 'plain'} device, not an ifb")
            ifb_ours = self._root_is_ours(spec.ifb, ifb, INGRESS_ROOT_HANDLE, qdiscs=qdiscs)
        # Fed from the pods' side, the uplink's ingress is not colocd's business.
        ingress = self._ingress(spec.uplink, uplink, strict=not from_pods, qdiscs=qdiscs)
        want = spec.pod_devices if from_pods else frozenset()
        pods = self._pods.observe(want, qdiscs)

        labels = _labels(spec)
        try:
            self._converge(
                _Device(spec.uplink, uplink, EGRESS_KEY_OFFSET), desired_tree(spec), egress_ours,
                labels,
            )  # fmt: skip
            if from_pods or spec.ifb is None:
                self._drop_ingress(spec.uplink, uplink, ingress)
            if spec.ifb is None:
                self._notes(self._pods.clear())
            else:
                if ifb is None:
                    ifb = nl.add_ifb(spec.ifb)
                    self._note(spec.ifb, "add", f"ifb {spec.ifb}")
                elif not _require(nl.link(ifb), spec.ifb).up:
                    nl.set_up(spec.ifb, ifb)
                    self._note(spec.ifb, "change", f"link {spec.ifb} up")
                # The ifb's tree is complete before the first packet is redirected to it.
                ingress_tree = desired_tree(spec.ingress(), INGRESS_ROOT_HANDLE)
                self._converge(
                    _Device(spec.ifb, ifb, INGRESS_KEY_OFFSET, INGRESS_ROOT_HANDLE),
                    ingress_tree, ifb_ours, labels,
                )  # fmt: skip
                self._notes(self._pods.converge(spec.ifb, ifb, want, pods))
                if not from_pods:
                    self._redirect(spec.uplink, uplink, spec.ifb, ifb, ingress)
        except NetlinkOperationError as err:
            self._revert_after(err, spec)
            raise
        return ShapingReport(tuple(self._changes))

    def redirect_pods(self, spec: UplinkShaping) -> ShapingReport:
        """Between full `apply`s: redirect the pod-facing devices that came, and stop
        redirecting those that went, reading nothing else back."""
        self._changes = []
        if spec.ifb is None or not spec.by_priority:
            return ShapingReport(())
        try:
            ifb = self._nl.require_link(spec.ifb)
            self._notes(self._pods.update(spec.ifb, ifb, spec.pod_devices))
        except NetlinkOperationError as err:
            self._revert_after(err, spec)
            raise
        return ShapingReport(tuple(self._changes))

    def change_rates(self, spec: UplinkShaping) -> ShapingReport:
        """Rewrite the tier classes' rate, ceil and prio in trees colocd already has in place
        as `spec` describes them, reading nothing back: how a moving batch ceiling is applied
        between full `apply`s (a full apply reads every filter, ~1 ms per pod)."""
        self._changes = []
        labels = _labels(spec)
        trees = [(spec.uplink, desired_tree(spec))]
        if spec.ifb is not None:
            trees.append((spec.ifb, desired_tree(spec.ingress(), INGRESS_ROOT_HANDLE)))
        try:
            for name, tree in trees:
                dev = _Device(name, self._nl.require_link(name), EGRESS_KEY_OFFSET, tree.root)
                for t in spec.tiers:
                    cid = tier_classid(t.tier, tree.root)
                    self._run(dev, PutClass(cid, tree.classes[cid], new=False), labels)
        except NetlinkOperationError as err:
            self._revert_after(err, spec)
            raise
        return ShapingReport(tuple(self._changes))

    def clear(
        self, uplink: str, ifb: str | None = None, clsacts: Iterable[str] = ()
    ) -> ShapingReport:
        """Remove colocd's qdiscs from `uplink` and from its ifb (`ifb`, or the one its
        ingress redirect points at), the ifb itself if colocd created it, and colocd's
        redirects on pod-facing devices (with the clsacts it added: this object's and
        `clsacts`, from a journal). Anything colocd did not add stays."""
        nl = self._nl
        self._changes = []
        # Redirects go first: a redirect to a deleted ifb drops the pods' packets.
        self._notes(self._pods.clear(clsacts))
        index = nl.link_index(uplink)
        if index is not None:
            ingress = self._ingress(uplink, index, strict=False)
            if ifb is None and ingress is not None and ingress.redirect_to is not None:
                link = nl.link(ingress.redirect_to)
                ifb = None if link is None else link.name
            if self._root_is_ours(uplink, index, ROOT_HANDLE, strict=False):
                self._run(_Device(uplink, index, EGRESS_KEY_OFFSET), DeleteRoot())
            self._drop_ingress(uplink, index, ingress)
        ifb_index = None if ifb is None else nl.link_index(ifb)
        if ifb is not None and ifb_index is not None:
            self._drop_ifb(ifb, ifb_index)
        return ShapingReport(tuple(self._changes))

    def pod_devices(
        self, ips: Iterable[IPv4Address | IPv6Address]
    ) -> dict[IPv4Address | IPv6Address, str | None]:
        """For each pod IP, the device the node reaches it by when it is directly attached
        (a veth or a bridge), else None (through a gateway: not a pod of this node)."""
        names = self._nl.link_names()
        found = {ip: self._nl.route_device(ip) for ip in ips}
        return {ip: None if index is None else names.get(index) for ip, index in found.items()}

    def traffic(self, spec: UplinkShaping) -> tuple[TierTraffic, ...]:
        """Per tier and direction: what each class sent, dropped and holds queued."""
        devices = [("egress", spec.uplink, ROOT_HANDLE)]
        if spec.ifb:
            devices.append(("ingress", spec.ifb, INGRESS_ROOT_HANDLE))
        readings = []
        for direction, device, root in devices:
            index = self._nl.link_index(device)
            stats = {} if index is None else self._nl.class_stats(device, index, root)
            for t in spec.tiers:
                s = stats.get(tier_classid(t.tier, root))
                if s is None:
                    readings.append(TierTraffic(t.tier, direction, device, *(None,) * 5))
                else:
                    readings.append(TierTraffic(t.tier, direction, device, *s))
        return tuple(readings)

    # --- steps -----------------------------------------------------------------------------

    def _revert_after(self, err: NetlinkOperationError, spec: UplinkShaping) -> None:
        """Remove colocd's half-built shaping rather than leave online pods in a wrong class."""
        try:
            self.clear(spec.uplink, spec.ifb)
            err.reverted = True
        except NetworkError as undo:
            err.add_note(f"revert failed: {undo}")

    def _note(self, device: str, action: str, target: str) -> None:
        self._changes.append(ShapingChange(device, action, target))

    def _notes(self, changes: Iterable[tuple[str, str, str]]) -> None:
        self._changes.extend(ShapingChange(*c) for c in changes)

    def _run(self, dev: _Device, op: TreeOp, labels: Mapping[int, str] | None = None) -> None:
        self._nl.run(dev.name, dev.index, op, dev.key_offset, dev.root)
        action, target = op.describe()
        label = (labels or {}).get(getattr(op, "class_id", 0))
        self._note(dev.name, action, f"{target} ({label})" if label else target)

    def _converge(
        self, dev: _Device, tree: DesiredTree, ours: bool, labels: Mapping[int, str]
    ) -> None:
        observed = (
            self._nl.read_tree(dev.name, dev.index, dev.key_offset, dev.root) if ours else None
        )
        for op in plan(tree, observed):
            self._run(dev, op, labels)

    def _root_is_ours(
        self,
        device: str,
        index: int,
        root: int,
        strict: bool = True,
        qdiscs: Mapping[int, list[Qdisc]] | None = None,
    ) -> bool:
        """True for colocd's htb `root`; False for no root qdisc or the kernel's default one
        (handle 0:). Any other raises ForeignStateError when `strict`. `qdiscs`: every
        device's, when already read."""
        have = self._nl.qdiscs(device, index) if qdiscs is None else qdiscs.get(index, [])
        for q in have:
            if q.parent != TC_H_ROOT:
                continue
            if q.kind == "htb" and q.handle == root:
                return True
            if strict and q.handle >> 16 != 0:
                raise ForeignStateError(device, _not_ours(q.kind, q.handle))
        return False

    def _ingress(
        self,
        device: str,
        index: int,
        strict: bool = True,
        qdiscs: Mapping[int, list[Qdisc]] | None = None,
    ) -> _Ingress | None:
        """The uplink's ingress qdisc, None if there is none. One colocd did not set up (a
        clsact, or filters of others) raises ForeignStateError when `strict`."""
        have = self._nl.qdiscs(device, index) if qdiscs is None else qdiscs.get(index, [])
        found = [q for q in have if q.parent == TC_H_INGRESS]
        if not found:
            return None
        q = found[0]
        if q.kind != "ingress":
            if strict:
                raise ForeignStateError(device, _not_ours(q.kind, q.handle))
            return None
        filters = self._nl.ingress_filters(device, index, INGRESS_HANDLE)
        ours = [f.redirect_to for f in filters if _is_our_redirect(f)]
        others = len(filters) - len(ours)
        if strict and others:
            raise ForeignStateError(device, "its ingress qdisc carries filters colocd did not add")
        return _Ingress(redirect_to=ours[0] if ours else None, others=others)

    def _redirect(
        self, device: str, index: int, ifb: str, ifb_index: int, ingress: _Ingress | None
    ) -> None:
        if ingress is None:
            self._nl.add_ingress(device, index)
            self._note(device, "add", "qdisc ingress ffff:")
        if ingress is None or ingress.redirect_to is None:
            self._nl.put_redirect(device, index, ifb, ifb_index, new=True)
            self._note(device, "add", f"redirect to {ifb}")
        elif ingress.redirect_to != ifb_index:
            self._nl.put_redirect(device, index, ifb, ifb_index, new=False)
            self._note(device, "replace", f"redirect to {ifb}")
            old = self._nl.link(ingress.redirect_to)
            if old is not None:
                self._drop_ifb(old.name, ingress.redirect_to)

    def _drop_ingress(self, device: str, index: int, ingress: _Ingress | None) -> None:
        """Remove colocd's redirect, and the ingress qdisc when nothing else is on it."""
        if ingress is None:
            return
        if ingress.others == 0:
            self._nl.delete_ingress(device, index)
            self._note(device, "delete", "qdisc ingress ffff:")
        elif ingress.redirect_to is not None:
            self._nl.delete_redirect(device, index)
            self._note(device, "delete", "ingress redirect")

    def _drop_ifb(self, name: str, index: int) -> None:
        link = self._nl.link(index)
        if link is not None and link.alias == IFB_ALIAS:
            self._nl.delete_link(name, index)
            self._note(name, "delete", f"ifb {name}")
        elif self._root_is_ours(name, index, INGRESS_ROOT_HANDLE, strict=False):
            root = INGRESS_ROOT_HANDLE
            self._run(_Device(name, index, INGRESS_KEY_OFFSET, root), DeleteRoot(root))


def default_uplink(netns: str | None = None) -> str:
    """The device of the default route (IPv4, else IPv6): the node's uplink."""
    nl = Netlink(netns)
    try:
        name = nl.default_route_device()
    finally:
        nl.close()
    if name is None:
        raise LinkNotFoundError("uplink", "no default route; set network.uplink")
    return name


def _labels(spec: UplinkShaping) -> dict[int, str]:
    """Class id → tier name on either device, for the change report."""
    return {
        tier_classid(t.tier, root): str(t.tier)
        for t in spec.tiers
        for root in (ROOT_HANDLE, INGRESS_ROOT_HANDLE)
    }


def _is_our_redirect(f: IngressFilter) -> bool:
    return f.kind == "u32" and f.prio == FILTER_PRIO and f.handle == REDIRECT_HANDLE


def _not_ours(kind: str, handle: int) -> str:
    return f"it carries a {kind} qdisc {handle_str(handle)} that colocd did not create"


def _require(link: Link | None, name: str) -> Link:
    if link is None:
        raise LinkNotFoundError(f"link {name}", "it disappeared while being shaped")
    return link


__all__ = [
    "DEFAULT_LEAF_LIMIT_BYTES",
    "INGRESS_ROOT_HANDLE",
    "ShapingChange",
    "ShapingReport",
    "TierShaping",
    "TierTraffic",
    "UplinkShaper",
    "UplinkShaping",
    "default_uplink",
    "desired_tree",
    "tier_classid",
]
