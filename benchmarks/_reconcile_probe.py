"""Cost of reconciling pod classification, run inside a fresh network namespace by
bench_network (the agent's own code paths: isolation.pod_marks and isolation.network).

_reconcile_probe.py PODS REPEATS   prints JSON: wall and CPU ms per step (medians)

A veth pair stands in for the uplink, and one veth per pod (its addresses routed to it)
for the pods' devices. Steps: the first apply of PODS pods' marks (IPv4 and IPv6 each, so
2 x PODS set elements, each matched by source and by destination); the route lookups that
find the pods' devices; the first apply of the HTB trees with the ingress redirect on every
pod's device; a no-op apply (the full check); and one pod going while another comes, both
as a full check and as the agent's tick does it (only what changed).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from ipaddress import IPv4Address, IPv6Address

from isolation._tc_netlink import Netlink
from isolation.network import (
    INGRESS_ROOT_HANDLE,
    TierShaping,
    UplinkShaper,
    UplinkShaping,
    tier_classid,
)
from isolation.pod_marks import Marking, PodMarker
from qos.tiers import Tier

M = 1_000_000


def ips(first: int, count: int) -> frozenset:
    v4 = {IPv4Address(0x0A000000 + first + i) for i in range(count)}
    v6 = {IPv6Address(0xFD00 << 112 | (first + i)) for i in range(count)}
    return frozenset(v4 | v6)


def marking(online: frozenset, batch: frozenset) -> Marking:
    tiers = (Tier.SYSTEM, Tier.ONLINE, Tier.BATCH)
    return Marking(
        {t: tier_classid(t) for t in tiers},
        {Tier.ONLINE: online, Tier.BATCH: batch},
        {t: tier_classid(t, INGRESS_ROOT_HANDLE) for t in tiers},
    )


def spec(online: frozenset, batch: frozenset, devices: frozenset[str]) -> UplinkShaping:
    return UplinkShaping(
        uplink="bench0", ifb="benchifb0", root_rate_bps=900 * M, default_tier=Tier.SYSTEM,
        by_priority=True, pod_devices=devices,
        tiers=(
            TierShaping(Tier.SYSTEM, 20 * M, 900 * M, 0),
            TierShaping(Tier.ONLINE, 600 * M, 900 * M, 0, online),
            TierShaping(Tier.BATCH, 50 * M, 300 * M, 1, batch),
        ),
    )  # fmt: skip


def veth(nl: Netlink, name: str, peer: str) -> int:
    nl._ipr.link("add", ifname=name, kind="veth", peer=peer)
    for dev in (name, peer):
        nl.set_up(dev, nl.require_link(dev))
    return nl.require_link(name)


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def main() -> None:
    pods, repeats = int(sys.argv[1]), int(sys.argv[2])
    nl = Netlink(None)
    veth(nl, "bench0", "bench1")
    half = pods // 2
    online, batch = ips(1, half), ips(10_000, pods - half)
    for i, first in enumerate([*range(1, half + 1), *range(10_000, 10_000 + pods - half), 20_000]):
        index = veth(nl, f"bp{i}", f"bq{i}")
        for ip in ips(first, 1):
            nl._ipr.route("add", dst=f"{ip}/{ip.max_prefixlen}", oif=index)
    nl.close()
    # One pod goes, another comes (both families, each with its own device).
    batch2 = (batch - ips(10_000, 1)) | ips(20_000, 1)
    with UplinkShaper() as shaper:
        found = shaper.pod_devices(online | batch | batch2)
    devices = frozenset(found[ip] for ip in online | batch)
    devices2 = frozenset(found[ip] for ip in online | batch2)
    steps: dict[str, list[tuple[float, float]]] = {}
    with PodMarker() as marker, UplinkShaper() as shaper:
        for _ in range(repeats):
            marker.clear()
            shaper.clear("bench0", "benchifb0")
            for name, fn in (
                ("marks: first apply", lambda: marker.apply(marking(online, batch))),
                ("marks: no change", lambda: marker.apply(marking(online, batch))),
                ("marks: one pod out, one in", lambda: marker.apply(marking(online, batch2))),
                (
                    "marks: one pod back, from what was applied (agent's tick)",
                    lambda: marker.apply(marking(online, batch), verify=False),
                ),
                (
                    f"pod devices: route lookup of {2 * pods} IPs",
                    lambda: shaper.pod_devices(online | batch),
                ),
                (
                    f"htb + redirects on {pods} pod devices: first apply",
                    lambda: shaper.apply(spec(online, batch, devices)),
                ),
                ("htb + redirects: no change", lambda: shaper.apply(spec(online, batch, devices))),
                (
                    "htb + redirects: one pod out, one in",
                    lambda: shaper.apply(spec(online, batch2, devices2)),
                ),
                (
                    "redirects: one pod back (agent's tick)",
                    lambda: shaper.redirect_pods(spec(online, batch, devices)),
                ),
                (
                    "htb: batch ceiling change",
                    lambda: shaper.apply(
                        spec(online, batch, devices).with_ceil(Tier.BATCH, 200 * M)
                    ),
                ),
                (
                    "htb: batch ceiling change, rates only (agent's tick)",
                    lambda: shaper.change_rates(
                        spec(online, batch, devices).with_ceil(Tier.BATCH, 150 * M)
                    ),
                ),
            ):
                steps.setdefault(name, []).append(timed(fn))
        marker.clear()
        shaper.clear("bench0", "benchifb0")
    print(json.dumps({
        "pods": pods,
        "set_elements": 2 * pods,
        "steps": {
            name: {"wall_ms": round(statistics.median(w for w, _ in v), 2),
                   "cpu_ms": round(statistics.median(c for _, c in v), 2)}
            for name, v in steps.items()
        },
    }))  # fmt: skip


if __name__ == "__main__":
    main()
