"""qos.network: the batch ceiling follows what online leaves free, falls at once, rises as
online decays, holds within the hysteresis, and falls back to batch's guarantee without a
reading; pods' IPs land in their tier's class (dedicated with online)."""

from __future__ import annotations

from ipaddress import ip_address

from qos.network import NetworkSettings, NetworkState, TierRate, format_bitrate, plan_network
from qos.pod import Pod
from qos.tiers import Tier

M = 1_000_000
S = NetworkSettings(
    enabled=True,
    link_rate_bps=1000 * M,
    tiers={
        Tier.SYSTEM: TierRate(50 * M, 1000 * M),
        Tier.ONLINE: TierRate(600 * M, 1000 * M),
        Tier.BATCH: TierRate(50 * M, 800 * M),
    },
    margin_bps=100 * M,
    hysteresis_bps=20 * M,
    decay=0.5,
)


def ceilings(*readings: float | None) -> list[tuple[int, str]]:
    state, out = NetworkState(), []
    for r in readings:
        plan, state = plan_network(S, [], {"egress": r, "ingress": r}, state)
        c = plan.ceilings[0]
        out.append((c.bps // M, c.kind))
    return out


def test_ceiling_is_link_minus_online_minus_margin_within_bounds() -> None:
    assert ceilings(300 * M) == [(600, "headroom")]
    assert ceilings(0) == [(800, "policy_ceil")]
    assert ceilings(900 * M) == [(50, "floor")]
    assert ceilings(None) == [(50, "no_reading")]


def test_falls_at_once_rises_as_online_decays_and_holds_small_changes() -> None:
    got = ceilings(100 * M, 500 * M, 100 * M, 100 * M, 180 * M)
    assert got[0] == (800, "policy_ceil")
    assert got[1] == (400, "headroom")  # online rose: the ceiling falls in the same tick
    assert got[2] == (600, "headroom")  # smoothed online 300M: rises half way
    assert got[3] == (700, "headroom")  # 200M
    assert got[4] == (700, "held")  # smoothed 190M: 710M is within the 20M hysteresis


def test_every_rate_has_a_reason_and_ips_go_to_their_class() -> None:
    a = Pod("x", "web", ips=(ip_address("10.0.0.1"), ip_address("fd00::1")))
    b = Pod("x", "job", ips=(ip_address("10.0.0.2"),))
    h = Pod("x", "exporter", host_network=True)
    pods = [(a, Tier.DEDICATED), (b, Tier.BATCH), (h, Tier.SYSTEM)]
    plan, _ = plan_network(S, pods, {"egress": 300 * M}, NetworkState())
    assert plan.ips[Tier.ONLINE] == {ip_address("10.0.0.1"), ip_address("fd00::1")}
    assert plan.ips[Tier.BATCH] == {ip_address("10.0.0.2")}
    assert plan.host_network == ("x/exporter",)
    assert len(plan.rates) == 6 and all(r.reason for r in plan.rates)
    batch = plan.rate(Tier.BATCH, "egress")
    assert batch.reason == (
        "batch egress: rate 50Mbit guaranteed; batch egress ceiling 600Mbit: link 1Gbit - "
        "non-batch 300Mbit (measured 300Mbit) - margin 100Mbit = 600Mbit within [50Mbit, 800Mbit]"
    )
    assert plan.rate(Tier.BATCH, "ingress").ceil_bps == 50 * M  # no ingress reading


def test_format_bitrate() -> None:
    assert [format_bitrate(b) for b in (950 * M, 1.2e9, 64_000, 12)] == [
        "950Mbit", "1.2Gbit", "64kbit", "12bit",
    ]  # fmt: skip


def test_pod_ips_and_host_network_from_a_manifest() -> None:
    from agent.sources.pod_manifest import parse_pod

    body = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"podIPs": [{"ip": "10.1.2.3"}, {"ip": "fd00::3"}, {"ip": "10.1.2.3"}]},
    }
    pod = parse_pod(body)
    assert pod.ips == (ip_address("10.1.2.3"), ip_address("fd00::3")) and not pod.host_network
    host = parse_pod({**body, "spec": {**body["spec"], "hostNetwork": True}})
    assert host.host_network and host.ips == ()
    try:
        parse_pod({**body, "status": {"podIPs": [{"ip": "10.1.2"}]}})
    except ValueError as err:
        assert str(err).startswith("status.podIPs.0.ip: ")
    else:
        raise AssertionError("a bad pod IP was accepted")
