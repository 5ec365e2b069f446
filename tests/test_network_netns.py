"""Uplink shaping on the real kernel, in a private topology of network namespaces, with real
iperf3 traffic. `tc` (iproute2) is the independent witness of what the kernel carries.

Rates are far below what veth does on this machine, so HTB is the only bottleneck; runs are
a few seconds and tolerances wide (a shared 2-core machine)."""

from __future__ import annotations

import errno
import re
import subprocess
import threading
import time
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from isolation._net_errors import (
    ForeignStateError,
    LinkNotFoundError,
    NetlinkOperationError,
)
from isolation.network import TierShaping, UplinkShaper, UplinkShaping
from qos.tiers import Tier
from tests.netns_topology import (
    BATCH_IP,
    IFB,
    ONLINE_IP,
    UPLINK,
    Topology,
    iperf_result,
    netns_unavailable,
)

# Classification, pods coming and going, and revert also run on the VM's kernel (Debian 6.1,
# pure cgroup v2; ~18x slower under emulation, so only these few: all pass there).
IN_VM = pytest.mark.in_vm

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]

M = 1_000_000
SECONDS = 3
ONLINE_PORT, BATCH_PORT = 5201, 5202


def shaping(online_rate=100, online_ceil=120, batch_ceil=40, batch_rate=10, ifb=IFB):
    """Root 200 Mbit/s. By default the ceilings leave room on the root, so a batch class
    that got more than its ceil would show it."""
    return UplinkShaping(
        uplink=UPLINK,
        ifb=ifb,
        root_rate_bps=200 * M,
        default_tier=Tier.BATCH,
        tiers=(
            TierShaping(Tier.SYSTEM, 5 * M, 200 * M, 0),
            TierShaping(Tier.ONLINE, online_rate * M, online_ceil * M, 0, frozenset({ONLINE_IP})),
            TierShaping(Tier.BATCH, batch_rate * M, batch_ceil * M, 1, frozenset({BATCH_IP})),
        ),
    )


@pytest.fixture
def topo():
    with Topology() as t:
        yield t


@pytest.fixture
def shaper(topo):
    with UplinkShaper(netns=topo.node) as s:
        yield s


def tc_dump(topo: Topology) -> str:
    """Everything tc shows on the node (no counters)."""
    parts = [topo.tc("node", "qdisc", "show")]
    for dev in (UPLINK, IFB):
        if (
            dev
            in subprocess.run(
                ["ip", "-n", topo.node, "-br", "link"], capture_output=True, text=True, check=True
            ).stdout
        ):
            parts += [topo.tc("node", "class", "show", "dev", dev)]
            parts += [topo.tc("node", "filter", "show", "dev", dev)]
    parts.append(topo.tc("node", "filter", "show", "dev", UPLINK, "ingress"))
    return "\n".join(parts)


def both_send(topo: Topology, reverse: bool = False) -> tuple[float, float]:
    """Online and batch pods each run one TCP stream to the peer (from it with `reverse`);
    returns what each got, in Mbit/s."""
    extra = ("-R",) if reverse else ()
    topo.iperf_server("peer", ONLINE_PORT)
    topo.iperf_server("peer", BATCH_PORT)
    on = topo.iperf_client("online", topo.peer_ip, ONLINE_PORT, SECONDS, *extra)
    ba = topo.iperf_client("batch", topo.peer_ip, BATCH_PORT, SECONDS, *extra)
    return iperf_result(on, SECONDS + 15).mbit, iperf_result(ba, SECONDS + 15).mbit


def test_apply_builds_the_tree_tc_shows(topo, shaper):
    report = shaper.apply(shaping())
    assert ("ifbup0", "add", "ifb ifbup0") in report.changes
    assert ("up0", "change", "class c01d:40 (batch)") not in report.changes
    qdiscs = topo.tc("node", "qdisc", "show", "dev", UPLINK)
    assert "qdisc htb c01d: root" in qdiscs
    assert "default 0x40" in qdiscs
    assert "qdisc bfifo 40: parent c01d:40 limit 256Kb" in qdiscs
    classes = topo.tc("node", "class", "show", "dev", IFB)
    assert "class htb c01e:40 parent c01e:1 leaf 40: prio 1 rate 10Mbit ceil 40Mbit" in classes
    egress = topo.tc("node", "filter", "show", "dev", UPLINK)
    assert "flowid c01d:30" in egress
    assert "match 0a630102/ffffffff at 12" in egress  # online pod, by source
    ingress = topo.tc("node", "filter", "show", "dev", IFB)
    assert "match 0a630202/ffffffff at 16" in ingress  # batch pod, by destination
    redirect = topo.tc("node", "filter", "show", "dev", UPLINK, "ingress")
    assert "Egress Redirect to device ifbup0" in redirect


def test_apply_twice_changes_nothing(topo, shaper):
    shaper.apply(shaping())
    before = tc_dump(topo)
    assert shaper.apply(shaping()).changes == ()
    assert tc_dump(topo) == before


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True], ids=["egress", "ingress via ifb"])
def test_batch_held_to_its_ceil_while_online_gets_its_rate(topo, shaper, reverse):
    shaper.apply(shaping())
    online, batch = both_send(topo, reverse)
    assert 0.5 * 40 <= batch <= 1.15 * 40, (online, batch)
    assert online >= 0.8 * 100, (online, batch)


@pytest.mark.slow
def test_online_keeps_its_rate_when_batch_may_borrow_the_whole_link(topo, shaper):
    shaper.apply(shaping(online_rate=150, online_ceil=200, batch_ceil=200))
    online, batch = both_send(topo)
    assert online >= 0.8 * 150, (online, batch)
    assert online + batch <= 1.1 * 200, (online, batch)


@pytest.mark.slow
def test_batch_ceil_change_at_runtime_takes_effect_within_two_seconds(topo, shaper):
    spec = shaping()
    shaper.apply(spec)
    topo.iperf_server("peer", BATCH_PORT)
    batch = topo.iperf_client("batch", topo.peer_ip, BATCH_PORT, 4)
    reports = []

    def lower_ceil():
        time.sleep(1.5)
        reports.append(shaper.apply(spec.with_ceil(Tier.BATCH, 15 * M)))

    lowering = threading.Thread(target=lower_ceil)
    lowering.start()
    result = iperf_result(batch, 20)
    lowering.join()
    assert [(c.device, c.target) for c in reports[0].changes] == [
        (UPLINK, "class c01d:40 (batch)"),
        (IFB, "class c01e:40 (batch)"),
    ]
    before, after = result.mean_between(0.5, 1.5), result.mean_between(3.0, 4.0)
    assert 0.5 * 40 <= before <= 1.15 * 40, result.intervals
    assert after <= 1.25 * 15, result.intervals
    assert "ceil 15Mbit" in topo.tc("node", "class", "show", "dev", UPLINK)


def test_pods_moving_and_a_tier_dropped_are_accepted_by_the_kernel(topo, shaper):
    shaper.apply(shaping())
    spec = shaping()
    moved = replace(
        spec,
        tiers=(
            replace(spec.tier(Tier.ONLINE), pod_ips=frozenset({BATCH_IP})),
            replace(spec.tier(Tier.BATCH), pod_ips=frozenset({ONLINE_IP})),
        ),
    )
    report = shaper.apply(moved)
    assert ("up0", "delete", "class c01d:10 (system)") not in report.changes  # no label: gone
    assert ("up0", "delete", "class c01d:10") in report.changes
    classes = topo.tc("node", "class", "show", "dev", UPLINK)
    assert "c01d:10" not in classes
    filters = topo.tc("node", "filter", "show", "dev", UPLINK).split("fh ")
    online_filter = next(f for f in filters if "0a630102/ffffffff" in f)
    assert "flowid c01d:40" in online_filter
    assert shaper.apply(moved).changes == ()


def test_clear_removes_everything_it_added(topo, shaper):
    pristine = topo.tc("node", "qdisc", "show", "dev", UPLINK)
    shaper.apply(shaping())
    report = shaper.clear(UPLINK)  # finds the ifb through the redirect
    assert {(c.device, c.target) for c in report.changes} == {
        ("up0", "qdisc htb c01d:"),
        ("up0", "qdisc ingress ffff:"),
        ("ifbup0", "ifb ifbup0"),
    }
    assert topo.tc("node", "qdisc", "show", "dev", UPLINK) == pristine
    assert IFB not in topo.links("node")
    assert shaper.clear(UPLINK).changes == ()


def test_clear_keeps_an_ifb_colocd_did_not_create(topo, shaper):
    subprocess.run(["ip", "-n", topo.node, "link", "add", IFB, "type", "ifb"], check=True)
    shaper.apply(shaping())
    shaper.clear(UPLINK)
    assert "qdisc htb" not in topo.tc("node", "qdisc", "show", "dev", IFB)
    assert IFB in topo.links("node")


def test_egress_only_spec_removes_ingress_shaping(topo, shaper):
    shaper.apply(shaping())
    report = shaper.apply(shaping(ifb=None))
    assert ("up0", "delete", "qdisc ingress ffff:") in report.changes
    assert "ingress" not in topo.tc("node", "qdisc", "show", "dev", UPLINK)
    assert "qdisc htb c01d:" in topo.tc("node", "qdisc", "show", "dev", UPLINK)


FOREIGN = [
    (
        "a tbf at the root",
        [["tc", "qdisc", "add", "dev", UPLINK, "root", "handle", "1:", "tbf", "rate", "1gbit",
          "burst", "64kb", "latency", "10ms"]],
        "shape up0: it carries a tbf qdisc 1: that colocd did not create",
    ),
    (
        "a clsact on the uplink",
        [["tc", "qdisc", "add", "dev", UPLINK, "clsact"]],
        "shape up0: it carries a clsact qdisc ffff: that colocd did not create",
    ),
    (
        "someone's filter on the ingress qdisc",
        [["tc", "qdisc", "add", "dev", UPLINK, "ingress"],
         ["tc", "filter", "add", "dev", UPLINK, "parent", "ffff:", "protocol", "ip", "prio", "5",
          "u32", "match", "ip", "dst", "10.0.0.1/32", "flowid", ":1"]],
        "shape up0: its ingress qdisc carries filters colocd did not add",
    ),
    (
        "the ifb's name taken by a veth",
        [["ip", "link", "add", IFB, "type", "veth", "peer", "name", "x0"]],
        "shape ifbup0: it is a veth device, not an ifb",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("case", "setup", "message"), FOREIGN, ids=[f[0] for f in FOREIGN])
def test_foreign_state_is_refused_and_nothing_changes(topo, shaper, case, setup, message):
    for argv in setup:
        subprocess.run([argv[0], "-n", topo.node, *argv[1:]], check=True)
    before = tc_dump(topo)
    with pytest.raises(ForeignStateError) as caught:
        shaper.apply(shaping())
    assert str(caught.value) == message
    assert tc_dump(topo) == before


def test_missing_uplink_and_missing_namespace(topo, shaper):
    with pytest.raises(LinkNotFoundError, match=f"find link eth9 in netns {topo.node}: no such"):
        shaper.apply(replace(shaping(), uplink="eth9"))
    with pytest.raises(LinkNotFoundError, match="find netns colocd-absent-0: no such network"):
        UplinkShaper(netns="colocd-absent-0")


def test_kernel_refusal_is_translated_and_shaping_reverted(topo, shaper):
    pristine = topo.tc("node", "qdisc", "show", "dev", UPLINK)
    with pytest.raises(NetlinkOperationError) as caught:
        shaper.apply(shaping(ifb="bad:ifb"))  # the kernel rejects ':' in device names
    err = caught.value
    assert err.errno == errno.EINVAL
    assert err.reverted
    assert str(err) == "add ifb bad:ifb on bad:ifb: Invalid argument (errno 22); shaping reverted"
    assert err.__cause__ is not None  # chained from pyroute2's NetlinkError
    assert topo.tc("node", "qdisc", "show", "dev", UPLINK) == pristine


def test_traffic_counters_per_tier(topo, shaper):
    spec = shaping()
    shaper.apply(spec)
    topo.iperf_server("peer", BATCH_PORT)
    iperf_result(topo.iperf_client("batch", topo.peer_ip, BATCH_PORT, 1), 15)
    readings = {(r.tier, r.direction): r for r in shaper.traffic(spec)}
    assert readings[Tier.BATCH, "egress"].sent_bytes > 1_000_000
    assert readings[Tier.ONLINE, "egress"].sent_bytes == 0
    assert readings[Tier.BATCH, "ingress"].device == IFB
    shaper.clear(UPLINK)
    assert all(r.sent_bytes is None for r in shaper.traffic(spec))


def by_priority(*devices: str) -> UplinkShaping:
    """The agent's way: no filters, ingress fed from the pods' devices."""
    return replace(shaping(), by_priority=True, pod_devices=frozenset(devices))


def pod_side(topo: Topology, dev: str) -> str:
    """The device's qdiscs and egress filters; an action's index is the kernel's to choose
    (a re-added redirect may get a new one while the freed one is still being released)."""
    shown = topo.tc("node", "qdisc", "show", "dev", dev) + topo.tc(
        "node", "filter", "show", "dev", dev, "egress"
    )
    return re.sub(r"\tindex \d+ ", "\tindex N ", shown)


@IN_VM
def test_by_priority_redirects_from_the_pods_devices_not_the_uplink(topo, shaper):
    report = shaper.apply(by_priority("on0", "ba0"))
    assert ("on0", "add", "qdisc clsact") in report.changes
    assert ("ba0", "add", f"redirect to {IFB}") in report.changes
    for dev in ("on0", "ba0"):
        side = pod_side(topo, dev)
        assert "qdisc clsact ffff: parent ffff:fff1" in side
        assert f"pref {0xC01D} u32" in side
        assert f"Egress Redirect to device {IFB}" in side
    assert "ingress" not in topo.tc("node", "qdisc", "show", "dev", UPLINK)
    # The ifb's tree is c01e:, its default a class of its own outside the link's.
    assert "qdisc htb c01e: root" in topo.tc("node", "qdisc", "show", "dev", IFB)
    assert "default 0x2" in topo.tc("node", "qdisc", "show", "dev", IFB)
    classes = topo.tc("node", "class", "show", "dev", IFB)
    assert "class htb c01e:2 root leaf 2: prio 0 rate 1Tbit" in classes
    assert "class htb c01e:40 parent c01e:1" in classes
    assert topo.tc("node", "filter", "show", "dev", UPLINK) == ""  # no u32 by IP
    assert shaper.apply(by_priority("on0", "ba0")).changes == ()


@IN_VM
def test_pods_devices_come_and_go_incrementally(topo, shaper):
    shaper.apply(by_priority("on0"))
    before = pod_side(topo, "on0")
    report = shaper.redirect_pods(by_priority("on0", "ba0"))
    assert {c.device for c in report.changes} == {"ba0"}
    report = shaper.redirect_pods(by_priority("ba0"))
    assert set(report.changes) == {
        ("on0", "delete", "redirect to the ifb"),
        ("on0", "delete", "qdisc clsact"),
    }
    assert "clsact" not in pod_side(topo, "on0")
    assert pod_side(topo, "ba0").count("Redirect") == 1
    shaper.redirect_pods(by_priority("ba0", "on0"))
    assert pod_side(topo, "on0") == before
    assert shaper.apply(by_priority("ba0", "on0")).changes == ()


@IN_VM
def test_clear_keeps_a_clsact_colocd_did_not_add_and_the_filters_on_it(topo, shaper):
    topo.tc("node", "qdisc", "add", "dev", "on0", "clsact")
    topo.tc("node", "filter", "add", "dev", "on0", "ingress", "prio", "5", "protocol", "ip",
            "u32", "match", "ip", "dst", "10.0.0.1/32", "flowid", ":1")  # fmt: skip
    pristine = {dev: pod_side(topo, dev) for dev in ("on0", "ba0")}
    shaper.apply(by_priority("on0", "ba0"))
    report = shaper.clear(UPLINK, IFB)
    assert ("on0", "delete", "qdisc clsact") not in report.changes
    assert ("ba0", "delete", "qdisc clsact") in report.changes
    assert {dev: pod_side(topo, dev) for dev in ("on0", "ba0")} == pristine
    assert "filter protocol ip pref 5 u32" in topo.tc(
        "node", "filter", "show", "dev", "on0", "ingress"
    )
    assert IFB not in topo.links("node")


@IN_VM
def test_clear_from_a_journal_removes_the_clsacts_another_run_added(topo, shaper):
    shaper.apply(by_priority("on0", "ba0"))
    with UplinkShaper(netns=topo.node) as fresh:  # a new process after a crash
        fresh.clear(UPLINK, IFB, clsacts=["on0", "ba0"])
    assert "clsact" not in pod_side(topo, "on0") + pod_side(topo, "ba0")


def test_a_pod_device_with_an_ingress_qdisc_is_refused_and_nothing_changes(topo, shaper):
    topo.tc("node", "qdisc", "add", "dev", "ba0", "ingress")
    before = tc_dump(topo) + pod_side(topo, "on0") + pod_side(topo, "ba0")
    with pytest.raises(ForeignStateError) as caught:
        shaper.apply(by_priority("on0", "ba0"))
    assert str(caught.value) == (
        "shape ba0: it carries an ingress qdisc, so colocd cannot add its clsact"
    )
    assert tc_dump(topo) + pod_side(topo, "on0") + pod_side(topo, "ba0") == before


def test_pod_devices_are_found_by_route(topo, shaper):
    assert shaper.pod_devices([ONLINE_IP, BATCH_IP]) == {ONLINE_IP: "on0", BATCH_IP: "ba0"}
    far = IPv4Address("192.0.2.7")  # through the default gateway: not a pod of this node
    assert shaper.pod_devices([far]) == {far: None}


def test_a_redirect_removed_by_hand_is_restored_by_the_next_full_check(topo, shaper):
    spec = by_priority("on0", "ba0")
    shaper.apply(spec)
    topo.tc("node", "filter", "del", "dev", "on0", "egress", "prio", str(0xC01D))
    assert "Redirect" not in pod_side(topo, "on0")
    assert shaper.apply(spec).changes == ((("on0", "add", f"redirect to {IFB}")),)
    assert f"Egress Redirect to device {IFB}" in pod_side(topo, "on0")


def test_a_pod_that_comes_to_a_device_with_a_clsact_leaves_that_clsact_alone(topo, shaper):
    shaper.apply(by_priority("on0"))
    topo.tc("node", "qdisc", "add", "dev", "ba0", "clsact")
    report = shaper.redirect_pods(by_priority("on0", "ba0"))
    assert report.changes == (("ba0", "add", f"redirect to {IFB}"),)  # no clsact of its own
    shaper.clear(UPLINK, IFB)
    assert "clsact" in pod_side(topo, "ba0")
    assert "clsact" not in pod_side(topo, "on0")


def test_a_pod_that_comes_to_a_device_with_an_ingress_qdisc_is_refused(topo, shaper):
    shaper.apply(by_priority("on0"))
    topo.tc("node", "qdisc", "add", "dev", "ba0", "ingress")
    with pytest.raises(ForeignStateError, match="shape ba0: it carries an ingress qdisc"):
        shaper.redirect_pods(by_priority("on0", "ba0"))
    assert "clsact" not in pod_side(topo, "ba0")
