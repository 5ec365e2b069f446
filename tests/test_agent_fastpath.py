"""The fast path's pure parts: what counts as a surge, and which cap is tighter."""

from __future__ import annotations

import pytest

from agent.config import FastPathSettings
from agent.observe.fastpath import FastPath, detect_surge, tighter
from agent.observe.sampler import OnlineNow
from qos.plan import CpusetCap, QuotaCap

S = FastPathSettings(surge_milli=100, stall_fraction=0.1)


def reading(used: float | None, stall: float | None = None) -> OnlineNow:
    return OnlineNow(since=10.0, at=10.05, used_milli=used, stall_fraction=stall)


@pytest.mark.parametrize(
    ("used", "expected", "stall", "fired", "trigger"),
    [
        (1500.0, 1000.0, None, [], "usage"),  # 500m above the prediction
        (1099.0, 1000.0, None, [], None),  # within surge_milli
        (1500.0, None, None, [], None),  # no prediction: usage alone says nothing
        (None, 1000.0, 0.3, [], "pressure"),  # stalled 30 % of the interval
        (900.0, 1000.0, 0.05, [], None),  # a little stall is normal
        (900.0, 1000.0, None, ["pod-a"], "pressure"),  # a PSI trigger fired
    ],
)
def test_what_counts_as_a_surge(
    used: float | None,
    expected: float | None,
    stall: float | None,
    fired: list[str],
    trigger: str | None,
) -> None:
    surge = detect_surge(reading(used, stall), expected, fired, S)
    assert (surge.trigger if surge else None) == trigger
    if surge is not None:
        assert surge.why


CPUSET_2 = CpusetCap((0, 1), "")
CPUSET_1 = CpusetCap((1,), "")


@pytest.mark.parametrize(
    ("new", "old", "is_tighter"),
    [
        (CPUSET_1, CPUSET_2, True),
        (CPUSET_2, CPUSET_1, False),  # the fast path never loosens
        (CPUSET_1, CPUSET_1, False),
        (QuotaCap(500, ""), QuotaCap(1000, ""), True),
        (QuotaCap(950, ""), QuotaCap(1000, ""), False),  # less than min_quota_drop
        (QuotaCap(500, ""), CPUSET_2, False),  # another mechanism: the tick decides
        (None, CPUSET_2, False),
        (CPUSET_1, None, False),
    ],
)
def test_only_a_tighter_cap_is_applied_between_ticks(
    new: CpusetCap | QuotaCap | None, old: CpusetCap | QuotaCap | None, is_tighter: bool
) -> None:
    assert tighter(new, old, drop=0.1) is is_tighter


def test_online_pods_stalls_are_read_every_stall_interval_where_no_trigger_watches() -> None:
    now = [0.0]
    settings = FastPathSettings(psi_triggers=False, interval_s=0.05, stall_interval_s=0.25)
    fast = FastPath(settings, cgroups=None, sampler=None, clock=lambda: now[0])  # type: ignore[arg-type]
    due = []
    for step in range(11):  # 0 to 500 ms, one read every 50 ms
        now[0] = step * 0.05
        due.append(fast._stall_due())
    assert [i for i, d in enumerate(due) if d] == [0, 5, 10]


def test_stalls_may_not_be_read_more_often_than_use() -> None:
    with pytest.raises(ValueError, match="stall_interval_s"):
        FastPathSettings(interval_s=0.1, stall_interval_s=0.05)
