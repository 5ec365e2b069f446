"""The few cgroups whose CPU counters, added and subtracted, give the online pods' use.

The fast path reads online CPU use every 50 ms. Reading each online pod costs a file per
pod; but a cgroup's CPU counter holds its whole subtree, so kubepods less besteffort is
the use of every Guaranteed and Burstable pod in two reads. `online_cover` finds such a
sum for any placement: at each directory above the pods it keeps the cheaper of "the
online pods below, each counted" and "the directory, less what is not online below it".
A directory is counted whole only when every cgroup in it is a pod the agent placed (or a
directory leading to one), so nothing unknown is taken for online use.

One gap is stated rather than closed: a process attached to a QoS-level directory itself
(kubelet puts none there) is counted with that directory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import NamedTuple

__all__ = ["OnlineCover", "online_cover"]

Signed = tuple[tuple[str, int], ...]


class OnlineCover(NamedTuple):
    """Online use = the CPU use of `add` less that of `subtract`; `online` are the pods."""

    online: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    subtract: tuple[str, ...] = ()

    @property
    def reads(self) -> tuple[str, ...]:
        return (*self.add, *self.subtract)


def _parent(cgroup: str) -> str:
    return cgroup.rsplit("/", 1)[0] if "/" in cgroup else ""


def _top(pods: Iterable[str]) -> str:
    """The deepest directory above every pod (so every pod's ancestors reach it)."""
    parts = [p.split("/")[:-1] for p in pods]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if any(name != level[0] for name in level):
            break
        common.append(level[0])
    return "/".join(common)


def _shorter(a: Signed, b: Signed) -> Signed:
    return b if len(b) < len(a) else a


def online_cover(
    online: Iterable[str], others: Iterable[str], children: Callable[[str], list[str] | None]
) -> OnlineCover:
    """The cheapest signed sum of cgroups equal to the `online` pods' CPU use, given every
    other pod placed (`others`) and what each directory holds (`children`: its child
    cgroups, None when it is gone)."""
    on = tuple(dict.fromkeys(online))
    pods = set(on) | set(others)
    if not on:
        return OnlineCover()
    top = _top(pods)
    below: dict[str, set[str]] = defaultdict(set)
    for pod in pods:
        node = pod
        while node != top:
            below[_parent(node)].add(node)
            node = _parent(node)
    on_set = set(on)

    def split(node: str) -> tuple[Signed, Signed]:
        """(online use, other use) below `node`, each as a signed sum."""
        if node in pods:
            own: Signed = ((node, 1),)
            return (own, ()) if node in on_set else ((), own)
        parts = [split(c) for c in sorted(below[node])]
        ons: Signed = tuple(x for p in parts for x in p[0])
        offs: Signed = tuple(x for p in parts for x in p[1])
        held = children(node)
        if held is None or not set(held) <= below[node]:
            return ons, offs
        whole = (node, 1)
        return (
            _shorter(ons, (whole, *((c, -s) for c, s in offs))),
            _shorter(offs, (whole, *((c, -s) for c, s in ons))),
        )

    signed = split(top)[0]
    return OnlineCover(
        on,
        tuple(c for c, s in signed if s > 0),
        tuple(c for c, s in signed if s < 0),
    )
