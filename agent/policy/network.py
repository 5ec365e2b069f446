"""The policy's `network` section (human units) → `qos.network.NetworkSettings` (bits/s).

With `--pods` there is no ColocationPolicy: the configuration file's `network` section, the
same fields, is laid over the built-in defaults instead."""

from __future__ import annotations

from agent.policy.defaults import NETWORK
from agent.policy.model import NetworkSpec, NetworkTiers, ShapingClass
from agent.sources.units import parse_bitrate
from qos.network import NetworkSettings, TierRate
from qos.tiers import Tier

__all__ = ["layered", "to_network_settings"]

IFB = "colocd-ifb0"


def layered(spec: NetworkSpec | None, base: NetworkSpec = NETWORK) -> NetworkSpec:
    """`spec`'s fields over `base` (tier classes replace whole, as in a policy)."""
    if spec is None:
        return base
    fields = {k: v for k, v in spec if v is not None and k != "tiers"}
    tiers = base.tiers or NetworkTiers()
    if spec.tiers is not None:
        tiers = tiers.model_copy(update={k: v for k, v in spec.tiers if v is not None})
    return base.model_copy(update={**fields, "tiers": tiers})


def _rate(cls: ShapingClass | None, link: int, tier: str) -> TierRate:
    if cls is None:
        raise ValueError(f"network.tiers.{tier}: not set")
    ceil = link if cls.ceil is None else parse_bitrate(cls.ceil)
    return TierRate(parse_bitrate(cls.rate), min(ceil, link))


def to_network_settings(spec: NetworkSpec) -> NetworkSettings:
    """From a complete (resolved or layered) section; ValueError names a missing field."""
    for name in ("enabled", "link_rate", "tiers", "batch_margin", "batch_hysteresis"):
        if getattr(spec, name) is None:
            raise ValueError(f"network.{name}: not set")
    assert spec.link_rate and spec.tiers and spec.batch_margin and spec.batch_hysteresis
    link = parse_bitrate(spec.link_rate)
    tiers = {
        Tier.SYSTEM: _rate(spec.tiers.system, link, "system"),
        Tier.ONLINE: _rate(spec.tiers.online, link, "online"),
        Tier.BATCH: _rate(spec.tiers.batch, link, "batch"),
    }
    total = sum(t.rate_bps for t in tiers.values())
    if total > link:
        raise ValueError(f"network: tier rates add up to {total} bit/s, above linkRate {link}")
    return NetworkSettings(
        enabled=bool(spec.enabled),
        uplink=spec.uplink or None,
        ifb=IFB if spec.ingress else None,
        link_rate_bps=link,
        tiers=tiers,
        margin_bps=parse_bitrate(spec.batch_margin),
        hysteresis_bps=parse_bitrate(spec.batch_hysteresis),
        take_over=bool(spec.take_over),
    )
