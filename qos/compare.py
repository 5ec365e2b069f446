"""Judging replay results against each other: oracle share, Pareto front, and the bar colocd
must clear against its peers on every trace.

The bar, per resource (CPU, memory), with the oracle a bound and not a peer:
- colocd's violation seconds are no more than the fewest of any peer's;
- colocd reclaims at least as much as every peer with no more violation seconds than it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qos.replay import ReplayResult

ORACLE = "oracle"
OURS = "colocd"


def oracle_share(result: ReplayResult, oracle: ReplayResult) -> tuple[float, float]:
    """(CPU, memory) reclaim as a share of the oracle's (0 where the oracle has none)."""
    cpu = (
        result.reclaimed_core_hours / oracle.reclaimed_core_hours
        if oracle.reclaimed_core_hours
        else 0.0
    )
    mem = (
        result.reclaimed_gib_hours / oracle.reclaimed_gib_hours
        if oracle.reclaimed_gib_hours
        else 0.0
    )
    return cpu, mem


def _objectives(r: ReplayResult) -> tuple[float, float, float, float]:
    """All to maximise, rounded so float noise makes no front."""
    return (
        round(r.reclaimed_core_hours, 3),
        round(r.reclaimed_gib_hours, 3),
        -round(r.cpu.seconds, 3),
        -round(r.memory.seconds, 3),
    )


def pareto_front(results: Sequence[ReplayResult]) -> set[str]:
    """Names of the policies no other one beats on reclaim (CPU, memory) and violation
    seconds (CPU, memory) at once; the oracle is left out, being no policy one can run."""
    runnable = [r for r in results if r.name != ORACLE]
    front = set()
    for r in runnable:
        mine = _objectives(r)
        beaten = any(
            all(a >= b for a, b in zip(_objectives(o), mine, strict=True))
            and _objectives(o) != mine
            for o in runnable
            if o is not r
        )
        if not beaten:
            front.add(r.name)
    return front


@dataclass(frozen=True, slots=True)
class Bar:
    """One resource's bar on one trace: what colocd had and what it needed."""

    resource: str
    violation_seconds: float
    fewest_peer_violation_seconds: float
    reclaimed: float
    needed_reclaim: float  # the most any peer with no more violation seconds reclaimed
    needed_from: str

    @property
    def safe_enough(self) -> bool:
        return self.violation_seconds <= self.fewest_peer_violation_seconds

    @property
    def reclaims_enough(self) -> bool:
        return round(self.reclaimed, 3) >= round(self.needed_reclaim, 3)

    @property
    def holds(self) -> bool:
        return self.safe_enough and self.reclaims_enough

    def line(self) -> str:
        unit = "core-h" if self.resource == "cpu" else "GiB-h"
        return (
            f"{self.resource}: violations {self.violation_seconds:g}s vs the fewest of a peer "
            f"{self.fewest_peer_violation_seconds:g}s ({'ok' if self.safe_enough else 'MORE'}); "
            f"reclaim {self.reclaimed:.1f} {unit} vs {self.needed_reclaim:.1f} of "
            f"{self.needed_from} ({'ok' if self.reclaims_enough else 'LESS'})"
        )


def bars(ours: ReplayResult, peers: Sequence[ReplayResult]) -> tuple[Bar, Bar]:
    """The CPU and memory bars of `ours` against `peers` (the oracle excluded)."""
    others = [p for p in peers if p.name != ORACLE and p is not ours]
    out = []
    for resource, viol, got in (
        ("cpu", lambda r: r.cpu.seconds, lambda r: r.reclaimed_core_hours),
        ("memory", lambda r: r.memory.seconds, lambda r: r.reclaimed_gib_hours),
    ):
        mine = viol(ours)
        fewest = min((viol(p) for p in others), default=mine)
        as_safe = [p for p in others if viol(p) <= mine]
        best = max(as_safe, key=got, default=None)
        out.append(
            Bar(
                resource,
                mine,
                fewest,
                got(ours),
                0.0 if best is None else got(best),
                "no peer" if best is None else best.name,
            )
        )
    return out[0], out[1]
