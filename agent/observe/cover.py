"""The few cgroups whose counters, added and subtracted, give a set of pods' use.

Reading each pod costs a file per pod and counter; but a cgroup's CPU and memory counters
hold its whole subtree, so kubepods less besteffort is the use of every Guaranteed and
Burstable pod in two reads. `cover_of` finds such a sum for any set of pods and any
placement: at each directory above the pods it keeps the cheaper of "the pods below, each
counted" and "the directory, less what is not in the set below it". A directory is counted
whole only when every cgroup directly in it is a pod the agent placed or a directory
leading to one, and what it holds outside the set is taken away with it: a pod kubelet made
that the agent has not placed yet, in besteffort, leaves kubepods less besteffort the
online pods' use. So nothing unknown is taken for the set's use. The tick sums its tiers
this way, and the fast path reads the online tier's CPU use every 50 ms.

One gap is stated rather than closed: a process attached to a QoS-level directory itself
(kubelet puts none there) is counted with that directory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import NamedTuple

__all__ = ["Cover", "cover_of", "parent"]

Signed = tuple[tuple[str, int], ...]


class Cover(NamedTuple):
    """The `pods`' use = the use of `add` less that of `subtract`."""

    pods: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    subtract: tuple[str, ...] = ()

    @property
    def reads(self) -> tuple[str, ...]:
        return (*self.add, *self.subtract)


def parent(cgroup: str) -> str:
    """The directory holding `cgroup` ("" for a top-level one)."""
    return cgroup.rpartition("/")[0]


def _top(pods: Iterable[str]) -> str:
    """The deepest directory above every pod (so every pod's ancestors reach it)."""
    parts = [p.split("/")[:-1] for p in pods]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if any(name != level[0] for name in level):
            break
        common.append(level[0])
    return "/".join(common)


def _normal(terms: Signed) -> Signed:
    """The same sum with each cgroup once (terms that cancel dropped)."""
    total: dict[str, int] = {}
    for cgroup, sign in terms:
        total[cgroup] = total.get(cgroup, 0) + sign
    return tuple((c, s) for c, s in total.items() if s)


def _rest(child: str, side: Signed, other: Signed, placed_only: bool) -> Signed:
    """Minus everything below `child` but `side` (the side's sum below it): the other
    side's sum where `child` holds only placed pods, if no longer than `child` less `side`."""
    less = _normal(((child, -1), *side))
    if not placed_only:
        return less
    return min(less, tuple((c, -s) for c, s in other), key=len)


def _shorter(pods: Signed, whole: Signed) -> Signed:
    """The shorter sum; on a tie the directory's, which the tick's other sums share."""
    return whole if len(whole) <= len(pods) else pods


def cover_of(
    wanted: Iterable[str], others: Iterable[str], children: Callable[[str], list[str] | None]
) -> Cover:
    """The cheapest signed sum of cgroups equal to the `wanted` pods' use, given every other
    pod placed (`others`) and what each directory holds (`children`: its child cgroups,
    None when it is gone)."""
    on = tuple(dict.fromkeys(wanted))
    pods = set(on) | set(others)
    if not on:
        return Cover()
    top = _top(pods)
    below: dict[str, set[str]] = defaultdict(set)
    for pod in pods:
        node = pod
        while node != top:
            below[parent(node)].add(node)
            node = parent(node)
    on_set = set(on)

    def split(node: str) -> tuple[Signed, Signed, bool]:
        """(the wanted pods' use, the others' use) below `node`, each as a signed sum, and
        whether `node` holds nothing but placed pods."""
        if node in pods:
            own: Signed = ((node, 1),)
            return ((own, ()) if node in on_set else ((), own)) + (True,)
        kids = sorted(below[node])
        parts = [split(c) for c in kids]
        ons: Signed = tuple(x for p in parts for x in p[0])
        offs: Signed = tuple(x for p in parts for x in p[1])
        held = children(node)
        if held is None or not set(held) <= below[node]:
            return ons, offs, False
        whole = ((node, 1),)
        # `node` less, for each child, all of it but the side wanted: that side's complement
        # where the child holds only placed pods, else the child less that side's own sum
        # (so what the agent did not place below the child is taken away with it).
        on_whole = whole + tuple(
            x for c, p in zip(kids, parts, strict=True) for x in _rest(c, p[0], p[1], p[2])
        )
        off_whole = whole + tuple(
            x for c, p in zip(kids, parts, strict=True) for x in _rest(c, p[1], p[0], p[2])
        )
        return (
            _shorter(ons, _normal(on_whole)),
            _shorter(offs, _normal(off_whole)),
            all(p[2] for p in parts),
        )

    signed = split(top)[0]
    return Cover(
        on,
        tuple(c for c, s in signed if s > 0),
        tuple(c for c, s in signed if s < 0),
    )
