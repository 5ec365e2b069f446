"""How much memory a fixed reserve, chosen per trace in hindsight, reclaims with no violation.

Issue 12's memory bar asks colocd to reclaim at least as much as every peer that is as safe
on every shipped trace. This benchmark asks how far from that bar a whole family of simple
rules stands when each may cheat: batch is offered `capacity - level - reserve x capacity`,
where the level is the current reading or the peak of the last 30 min, 3 h or 24 h, and the
reserve is the smallest that gives no memory violation on that very trace (found by
bisection: a larger reserve only lowers every offer, so violations only fall). Each rule
runs twice: offering from the first reading, and offering nothing for the first hour (the
length of colocd's memory cold start, `cold_start_memory_seconds`), so the rises above a
window too young to hold the peak need no reserve. No causal rule of that form can do
better on that trace. Printed per trace: colocd's reclaim, the most any peer with no memory
violation reclaimed (what a rule with none must reach), and each hindsight rule's reserve
and reclaim; where no rule reaches the peer's figure, the bar is out of reach for the whole
family. colocd's own memory rule is outside it (the higher of the 24-h peak and the current
reading plus a learned step), which is how it passes Katalyst on m_1934 and m_1942, where no
rule of the family does.

Pure computation over `colocd simulate`'s replay (qos/replay.py); writes
benchmarks/results/memory_hindsight.json.
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from agent.commands.simulate import trace_files
from agent.sources.trace import read_trace
from qos.baselines import peers
from qos.replay import ColocdPolicy, Observation, Offer, ReplayResult, TraceRow, replay
from qos.settings import DEFAULT_QOS_SETTINGS

RESULTS = Path(__file__).resolve().parent / "results" / "memory_hindsight.json"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "traces"
LEVELS = {"current": 0.0, "peak 30 min": 1800.0, "peak 3 h": 3 * 3600.0, "peak 24 h": 86400.0}
# Nothing held, or the first hour held as colocd's memory cold start holds it.
HELD = (0.0, DEFAULT_QOS_SETTINGS.predictor.cold_start_memory_seconds)
RESOLUTION = 0.001  # of capacity


class Seen(NamedTuple):
    first_t: float  # the first reading's time
    readings: deque[tuple[float, float]]  # (time, use) within the window


class FixedReserve:
    """Offers memory = capacity - level - reserve x capacity, nothing for the first
    `held` seconds; no CPU."""

    name = "fixed-reserve"

    def __init__(self, window_seconds: float, reserve: float, held: float = 0.0) -> None:
        self.window = window_seconds
        self.reserve = reserve
        self.held = held

    def start(self) -> Seen | None:
        return None

    def step(self, seen: Seen | None, obs: Observation) -> tuple[Offer, Seen]:
        use = (obs.online_memory_bytes or 0.0) + (obs.system_memory_bytes or 0.0)
        seen = seen or Seen(obs.t, deque())
        readings = seen.readings
        readings.append((obs.t, use))
        while readings[0][0] <= obs.t - self.window and len(readings) > 1:
            readings.popleft()
        if obs.t - seen.first_t < self.held:
            return Offer(0.0, 0.0), seen
        level = max(v for _, v in readings)
        cap = obs.memory_capacity_bytes
        return Offer(0.0, max(0.0, cap - level - self.reserve * cap)), seen


class Hindsight(NamedTuple):
    level: str
    held_s: float  # nothing offered for this long from the first reading
    reserve: float  # share of capacity
    gib_hours: float


def smallest_safe(rows: list[TraceRow], window: float, held: float = 0.0) -> Hindsight | None:
    """The smallest reserve (to RESOLUTION) with no memory violation, by bisection; None
    where the rule offers nothing even with no reserve (a trace that ends while held)."""
    if replay(rows, FixedReserve(window, 0.0, held)).reclaimed_gib_hours == 0:
        return None
    lo, hi = 0.0, 1.0
    best = replay(rows, FixedReserve(window, hi, held))
    if best.memory.seconds > 0:
        return None
    while hi - lo > RESOLUTION:
        mid = (lo + hi) / 2
        r = replay(rows, FixedReserve(window, mid, held))
        if r.memory.seconds > 0:
            lo = mid
        else:
            hi, best = mid, r
    name = next(k for k, v in LEVELS.items() if v == window)
    return Hindsight(name, held, round(hi, 4), round(best.reclaimed_gib_hours, 1))


def safe_peer_reclaim(others: list[ReplayResult]) -> tuple[str, float]:
    """The most memory a peer with no memory violation reclaimed (the bar a rule with no
    violation must reach), and which peer it was ("" and 0 if none was safe)."""
    safe = [p for p in others if p.memory.seconds == 0]
    if not safe:
        return "", 0.0
    top = max(safe, key=lambda p: p.reclaimed_gib_hours)
    return top.name, round(top.reclaimed_gib_hours, 1)


@dataclass(frozen=True)
class TraceVerdict:
    trace: str
    colocd_gib_hours: float
    colocd_memory_violation_seconds: float
    peer: str  # the peer with the most reclaim among those with no memory violation
    peer_gib_hours: float
    hindsight: list[Hindsight]

    @property
    def best_hindsight_gib_hours(self) -> float:
        return max((h.gib_hours for h in self.hindsight), default=0.0)

    @property
    def bar_within_reach(self) -> bool:
        return bool(self.hindsight) and self.best_hindsight_gib_hours >= self.peer_gib_hours

    def as_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "hindsight": [h._asdict() for h in self.hindsight],
            "best_hindsight_gib_hours": self.best_hindsight_gib_hours,
            "bar_within_reach": self.bar_within_reach,
        }

    def lines(self) -> str:
        """The trace's verdict, then its rules' reserve/GiB-h, a line for each start."""
        peer = f"{self.peer} {self.peer_gib_hours:.0f}" if self.peer else "none"
        reach = "within reach" if self.bar_within_reach else "OUT OF REACH"
        ours = f"{self.colocd_gib_hours:.0f}/{self.colocd_memory_violation_seconds:.0f}s"
        out = [f"{self.trace[:28]:28s} {ours:>10s} {peer:>18s}  ({reach})"]
        for held in HELD:
            rules = [h for h in self.hindsight if h.held_s == held]
            start = f"{held / 3600:g} h held" if held else "from the start"
            found = "  ".join(f"{h.level} {h.reserve:.1%}/{h.gib_hours:.0f}" for h in rules)
            out.append(f"    {start:15s}{found or 'nothing offered before the trace ends'}")
        return "\n".join(out)


def one_trace(path: str) -> TraceVerdict:
    rows = read_trace(path)
    ours = replay(rows, ColocdPolicy(DEFAULT_QOS_SETTINGS))
    peer, peer_gib = safe_peer_reclaim([replay(rows, p) for p in peers()])
    rules = [
        h
        for held in HELD
        for w in LEVELS.values()
        if (h := smallest_safe(rows, w, held)) is not None
    ]
    return TraceVerdict(
        Path(path).name,
        round(ours.reclaimed_gib_hours, 1),
        ours.memory.seconds,
        peer,
        peer_gib,
        rules,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trace",
        action="append",
        help="trace file or directory (repeatable; default examples/traces)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(f"{'trace':28s} {'colocd':>10s} {'safe peer':>18s}  (hindsight: reserve/GiB-h by level)")
    verdicts = []
    for path in trace_files(args.trace or [str(EXAMPLES)]):
        verdicts.append(one_trace(path))
        print(verdicts[-1].lines(), flush=True)
    out = [v.trace for v in verdicts if not v.bar_within_reach]
    print(
        f"{len(out)} of {len(verdicts)} traces: no fixed reserve, even chosen in hindsight, "
        f"reaches the memory reclaim of a peer with no violation: {', '.join(out) or 'none'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([v.as_json() for v in verdicts], indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
