"""The desired uplink shaping: what is refused before anything is touched, and how a spec
maps onto classes (no kernel needed)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from isolation._net_errors import NetworkError, ShapingSpecError
from isolation._tc_tree import PARENT_CLASSID
from isolation.errors import IsolationError
from isolation.network import TierShaping, UplinkShaping, desired_tree, tier_classid
from qos.tiers import Tier

M = 1_000_000
A, B = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")


def spec(**changes) -> UplinkShaping:
    base = UplinkShaping(
        uplink="eth0",
        ifb="ifb0",
        root_rate_bps=900 * M,
        default_tier=Tier.BATCH,
        tiers=(
            TierShaping(Tier.ONLINE, 600 * M, 900 * M, 0, frozenset({A})),
            TierShaping(Tier.BATCH, 50 * M, 300 * M, 1, frozenset({B})),
        ),
    )
    return replace(base, **changes)


def online(**changes) -> TierShaping:
    return replace(spec().tier(Tier.ONLINE), **changes)


BAD_SPECS = [
    ("rate above ceil", lambda: online(rate_bps=950 * M), "rate <= ceil"),
    ("rate below the minimum", lambda: online(rate_bps=1000), "got rate 1000"),
    ("prio outside 0..7", lambda: online(prio=8), "prio 8 is outside 0..7"),
    ("pod IP given as text", lambda: online(pod_ips=frozenset({"10.0.0.1"})), "not an IP address"),
    ("uplink name too long", lambda: spec(uplink="x" * 16), "is not 1..15 characters"),
    ("ifb same as uplink", lambda: spec(ifb="eth0"), "another device"),
    ("root rate zero", lambda: spec(root_rate_bps=0), "root rate 0 bit/s is outside"),
    ("leaf limit below one GSO packet", lambda: spec(leaf_limit_bytes=1500), "leaf limit 1500"),
    ("no tiers", lambda: spec(tiers=()), "at least one"),
    (
        "tier given twice",
        lambda: spec(tiers=(online(), online(pod_ips=frozenset()))),
        "exactly once",
    ),
    ("default tier without class", lambda: spec(default_tier=Tier.SYSTEM), "default tier system"),
    ("ceil above root", lambda: spec(root_rate_bps=800 * M), "ceil 900000000 exceeds root"),
    (
        "guarantees above root",
        lambda: spec(tiers=(online(ceil_bps=900 * M), online(tier=Tier.BATCH, pod_ips=set()))),
        "add up to 1200000000",
    ),
    (
        "pod IP in two tiers",
        lambda: spec(tiers=(online(), online(tier=Tier.BATCH, rate_bps=M, prio=1))),
        "pod IP 10.0.0.1 is in online and batch",
    ),
]


@pytest.mark.parametrize(("case", "build", "message"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_refused_with_one_line(case, build, message):
    with pytest.raises(ShapingSpecError) as caught:
        build()
    text = str(caught.value)
    assert message in text
    assert text.startswith("validate shaping ")
    assert "\n" not in text
    assert isinstance(caught.value, NetworkError)
    assert isinstance(caught.value, IsolationError)
    assert isinstance(caught.value, ValueError)


def test_with_ceil_changes_only_that_tier():
    base = spec()
    lower = base.with_ceil(Tier.BATCH, 100 * M)
    assert lower.tier(Tier.BATCH).ceil_bps == 100 * M
    assert lower.tier(Tier.ONLINE) == base.tier(Tier.ONLINE)
    assert base.tier(Tier.BATCH).ceil_bps == 300 * M  # frozen: the original is untouched


def test_with_ceil_of_a_missing_tier_is_refused():
    with pytest.raises(ShapingSpecError, match="tier system has no class"):
        spec().with_ceil(Tier.SYSTEM, M)


def test_class_ids_are_fixed_per_tier():
    assert [tier_classid(t) for t in Tier] == [0xC01D0010, 0xC01D0020, 0xC01D0030, 0xC01D0040]


def test_desired_tree_in_kernel_units():
    tree = desired_tree(spec())
    batch = tier_classid(Tier.BATCH)
    assert tree.default_minor == 0x40
    assert set(tree.classes) == {PARENT_CLASSID, tier_classid(Tier.ONLINE), batch}
    assert tree.classes[PARENT_CLASSID].rate == tree.classes[PARENT_CLASSID].ceil == 900 * M // 8
    assert tree.classes[batch].rate == 50 * M // 8
    assert tree.classes[batch].ceil == 300 * M // 8
    assert tree.classes[batch].parent == PARENT_CLASSID
    assert tree.routes == {A: tier_classid(Tier.ONLINE), B: batch}
    assert set(tree.leaf_limits.values()) == {256 * 1024}
