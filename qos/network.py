"""Network shaping decisions (pure): per-tier rates on the uplink, in both directions, and
the batch tier's dynamic ceiling.

System and online (dedicated pods share online's class) get the guaranteed rates the policy
gives them. Batch gets a small guarantee and a ceiling that follows what online leaves free:

    ceiling = link rate - measured non-batch throughput - margin, within [batch rate, batch ceil]

The measured throughput comes from the tier classes' byte counters (one reading per tick
and direction). It is smoothed so that the ceiling falls at once when online rises (online
is protected first) and rises only as online's traffic decays; a change smaller than the
hysteresis is not made, so the ceiling does not flap with every tick's noise. Without a
reading the ceiling falls back to batch's guarantee: failing towards online.

Every rate comes with a reason a human can check with a calculator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from qos.pod import Pod
from qos.tiers import Tier

__all__ = [
    "CEILING_REASONS",
    "DIRECTIONS",
    "BatchCeiling",
    "NetworkPlan",
    "NetworkSettings",
    "NetworkState",
    "TierRate",
    "TierRatePlan",
    "format_bitrate",
    "plan_network",
]

DIRECTIONS = ("egress", "ingress")
# The bounded label values of the ceiling's reason (metrics).
CEILING_REASONS = ("headroom", "floor", "policy_ceil", "no_reading", "held")
# The class each tier's packets go to: dedicated pods share online's guarantee.
SHAPED_TIER = {
    Tier.SYSTEM: Tier.SYSTEM,
    Tier.DEDICATED: Tier.ONLINE,
    Tier.ONLINE: Tier.ONLINE,
    Tier.BATCH: Tier.BATCH,
}


def format_bitrate(bps: float) -> str:
    """As people write it: 950Mbit, 1.2Gbit, 64kbit."""
    for unit, size in (("Gbit", 10**9), ("Mbit", 10**6), ("kbit", 10**3)):
        if bps >= size:
            return f"{bps / size:.4g}{unit}"
    return f"{bps:.0f}bit"


@dataclass(frozen=True, slots=True)
class TierRate:
    rate_bps: int
    ceil_bps: int


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """The policy's `network` section in base units (bits per second, seconds)."""

    enabled: bool = False
    uplink: str | None = None  # None: the device of the default route
    ifb: str | None = "colocd-ifb0"  # None: shape egress only
    link_rate_bps: int = 950_000_000
    tiers: Mapping[Tier, TierRate] = field(
        default_factory=lambda: {
            Tier.SYSTEM: TierRate(50_000_000, 950_000_000),
            Tier.ONLINE: TierRate(700_000_000, 950_000_000),
            Tier.BATCH: TierRate(50_000_000, 200_000_000),
        }
    )
    margin_bps: int = 50_000_000
    # Weight of a new reading when online's throughput falls (it rises at once).
    decay: float = 0.3
    hysteresis_bps: int = 10_000_000
    take_over: bool = False


class TierRatePlan(NamedTuple):
    tier: Tier
    direction: str
    rate_bps: int
    ceil_bps: int
    reason: str


class BatchCeiling(NamedTuple):
    direction: str
    bps: int
    kind: str  # one of CEILING_REASONS
    reason: str


class NetworkPlan(NamedTuple):
    rates: tuple[TierRatePlan, ...]
    ceilings: tuple[BatchCeiling, ...]
    ips: Mapping[Tier, frozenset[IPv4Address | IPv6Address]]  # shaped tier → pod IPs
    host_network: tuple[str, ...]  # pods whose traffic can only be told apart by the node
    default_tier: Tier = Tier.SYSTEM  # unmarked traffic: the node's own, host-network pods

    def rate(self, tier: Tier, direction: str) -> TierRatePlan:
        return next(r for r in self.rates if r.tier is tier and r.direction == direction)


class NetworkState(NamedTuple):
    online_bps: Mapping[str, float] = {}  # smoothed non-batch throughput per direction
    ceilings: Mapping[str, int] = {}  # the batch ceiling in force per direction


def _ceiling(
    s: NetworkSettings, direction: str, measured: float | None, state: NetworkState
) -> tuple[BatchCeiling, float | None]:
    batch = s.tiers[Tier.BATCH]
    floor, top = batch.rate_bps, batch.ceil_bps
    if measured is None:
        why = (
            f"batch {direction} ceiling {format_bitrate(floor)}: no throughput reading, "
            "held to its guarantee"
        )
        return BatchCeiling(direction, floor, "no_reading", why), None
    prev = state.online_bps.get(direction)
    smooth = measured if prev is None or measured >= prev else prev + s.decay * (measured - prev)
    headroom = s.link_rate_bps - smooth - s.margin_bps
    target = int(min(max(headroom, floor), top))
    if headroom <= floor:
        kind = "floor"
    elif headroom >= top:
        kind = "policy_ceil"
    else:
        kind = "headroom"
    calc = (
        f"link {format_bitrate(s.link_rate_bps)} - non-batch {format_bitrate(smooth)} "
        f"(measured {format_bitrate(measured)}) - margin {format_bitrate(s.margin_bps)} "
        f"= {format_bitrate(max(headroom, 0))}"
    )
    bounds = f"within [{format_bitrate(floor)}, {format_bitrate(top)}]"
    current = state.ceilings.get(direction)
    if current is not None and abs(target - current) < s.hysteresis_bps and floor <= current <= top:
        why = (
            f"batch {direction} ceiling {format_bitrate(current)} kept: {calc} {bounds} is "
            f"{format_bitrate(target)}, within the {format_bitrate(s.hysteresis_bps)} hysteresis"
        )
        return BatchCeiling(direction, current, "held", why), smooth
    why = f"batch {direction} ceiling {format_bitrate(target)}: {calc} {bounds}"
    return BatchCeiling(direction, target, kind, why), smooth


def plan_network(
    s: NetworkSettings,
    pods: Iterable[tuple[Pod, Tier]],
    measured: Mapping[str, float | None],
    state: NetworkState,
) -> tuple[NetworkPlan, NetworkState]:
    """The rates per tier and direction, the batch ceilings, and which pod IP is in which
    class. `measured`: per direction, the non-batch tiers' throughput in bits/s (None: no
    reading this tick)."""
    ips: dict[Tier, set[IPv4Address | IPv6Address]] = {t: set() for t in s.tiers}
    host: list[str] = []
    for pod, tier in pods:
        if pod.host_network:
            host.append(pod.key)
        shaped = SHAPED_TIER[tier]
        if shaped in ips:
            ips[shaped].update(pod.ips)
    directions = DIRECTIONS if s.ifb is not None else DIRECTIONS[:1]
    rates, ceilings = [], []
    online, current = dict(state.online_bps), dict(state.ceilings)
    for d in directions:
        ceiling, smooth = _ceiling(s, d, measured.get(d), state)
        ceilings.append(ceiling)
        current[d] = ceiling.bps
        if smooth is None:
            online.pop(d, None)
        else:
            online[d] = smooth
        for tier, tr in s.tiers.items():
            if tier is Tier.BATCH:
                why = f"batch {d}: rate {format_bitrate(tr.rate_bps)} guaranteed; {ceiling.reason}"
                rates.append(TierRatePlan(tier, d, tr.rate_bps, ceiling.bps, why))
                continue
            why = (
                f"{tier} {d}: rate {format_bitrate(tr.rate_bps)} guaranteed, "
                f"borrows up to {format_bitrate(tr.ceil_bps)} (policy network.tiers.{tier})"
            )
            rates.append(TierRatePlan(tier, d, tr.rate_bps, tr.ceil_bps, why))
    plan = NetworkPlan(
        rates=tuple(rates),
        ceilings=tuple(ceilings),
        ips={t: frozenset(v) for t, v in ips.items()},
        host_network=tuple(sorted(host)),
    )
    return plan, NetworkState(online, current)
