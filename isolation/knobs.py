"""The one knob table: every cgroup setting colocd writes, for cgroup v1 and v2.

Callers name a knob and give a value in the knob's own unit; they never name a file. Each knob
declares, for each version, the controller and file(s) that hold it and how to parse and
format them, plus one validator, a merge rule and what it pins.

    knob               value (unit)                   v2 file         v1 file(s)
    cpu.shares         int shares, 2..262144          cpu.weight      cpu.shares
    cpu.max            CpuMax(quota_us|None, period)  cpu.max         cfs_quota_us, cfs_period_us
    cpu.max.burst      int µs                         cpu.max.burst   cpu.cfs_burst_us
    cpu.idle           bool                           cpu.idle        cpu.idle
    cpuset.cpus        frozenset[int]                 cpuset.cpus     cpuset.cpus
    cpuset.mems        frozenset[int]                 cpuset.mems     cpuset.mems
    memory.min         int bytes | None (max)         memory.min      - (none on v1)
    memory.low         int bytes | None (max)         memory.low      - (none on v1)
    memory.high        int bytes | None (max)         memory.high     - (none on v1)
    memory.max         int bytes | None (max)         memory.max      memory.limit_in_bytes
    memory.soft_limit  int bytes | None (max)         - (v1 only)     memory.soft_limit_in_bytes
    io.weight          int, 1..10000                  io.weight       blkio.bfq.weight (10..1000)
    io.max             tuple[IoLimit, ...]            io.max          blkio.throttle.*_device (4)
    pids.max           int | None (max)               pids.max        pids.max
    freeze             bool                           cgroup.freeze   freezer.state

Conversions are the ones kubelet and runc use: cpu.weight = 1 + (shares-2)*9999/262142 and
io.weight = 1 + (blkio-10)*9999/990. Reading converts back to the smallest value that formats
to the same file content, so parse(format(v)) is stable and a journal entry reverts exactly.

Merge rules say how the executor may combine the current and the desired value while it
walks parents before children (`larger`: the larger number; `looser`: the less restrictive
limit, `None` being unlimited, or the union of a cpuset): the relaxed value first top-down,
then the final value bottom-up, so a parent never constrains a child mid-change.

`cpu.idle` pins `cpu.shares`: while it is 1 the kernel reads shares as 3 (weight 0) and
refuses writes, and clearing it resets shares to 1024 (weight 100), not to what it was.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from isolation.errors import KnobError
from qos.cpus import format_cpus as format_cpuset  # one list formatter for qos and cgroups

__all__ = [
    "KNOBS",
    "Binding",
    "CpuMax",
    "IoLimit",
    "Knob",
    "Merge",
    "format_cpuset",
    "knob",
    "looser",
    "parse_cpuset",
]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# v1 reports "unlimited" as PAGE_COUNTER_MAX pages; anything this large means no limit.
V1_UNLIMITED = 1 << 62
MAX_SHARES = 262144
MIN_SHARES = 2
MAX_WEIGHT = 10000


class Merge(StrEnum):
    NONE = "none"
    LARGER = "larger"
    LOOSER = "looser"


class CpuMax(NamedTuple):
    """CFS bandwidth: `quota_us` of CPU time per `period_us` (None = no limit)."""

    quota_us: int | None
    period_us: int = 100_000

    @property
    def cores(self) -> float | None:
        return None if self.quota_us is None else self.quota_us / self.period_us


class IoLimit(NamedTuple):
    """Throttle for one block device (`major:minor`); None = unlimited."""

    device: str
    rbps: int | None = None
    wbps: int | None = None
    riops: int | None = None
    wiops: int | None = None


IO_FIELDS = ("rbps", "wbps", "riops", "wiops")

Texts = tuple[str, ...]
# format(value, current value or None) -> one text per file; None leaves that file alone.
Formatter = Callable[[Any, Any], tuple[str | None, ...]]


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a knob lives on one cgroup version. `controller` is the v1 mount (v1) or the
    controller that must be enabled in the parent (v2; "" for core `cgroup.*` files)."""

    controller: str
    files: tuple[str, ...]
    parse: Callable[[Texts], Any]
    format: Formatter


@dataclass(frozen=True, slots=True)
class Knob:
    name: str
    v1: Binding | None
    v2: Binding | None
    validate: Callable[[Any], Any]
    merge: Merge = Merge.NONE
    # Knobs this one pins while it is set (and resets when cleared): cpu.idle -> cpu.shares.
    pins: tuple[str, ...] = ()
    # Why the knob has no binding on a version, and what comes nearest there.
    absent: Mapping[int, str] | None = None

    def binding(self, version: int) -> Binding | None:
        return self.v1 if version == 1 else self.v2

    def absent_reason(self, version: int) -> str:
        reason = (self.absent or {}).get(version)
        return reason or f"{self.name} does not exist on cgroup v{version}"

    def check(self, value: Any) -> Any:
        """The validated value; raises KnobError with the reason."""
        try:
            return self.validate(value)
        except (TypeError, ValueError) as err:
            raise KnobError(self.name, f"invalid value {value!r}: {err}") from err

    def relaxed(self, current: Any, desired: Any) -> Any:
        """What to write on the way down (parents first): never tighter than `current`."""
        if self.merge is Merge.LARGER:
            return max(current, desired)
        if self.merge is Merge.LOOSER:
            return looser(current, desired)
        return desired


# --- value helpers ---------------------------------------------------------------------------


def looser(a: Any, b: Any) -> Any:
    """The less restrictive of two limits on one knob (None: no limit; cpusets: the union)."""
    if isinstance(a, frozenset):
        return a | b
    if isinstance(a, CpuMax):
        if a.quota_us is None:
            return a
        if b.quota_us is None:
            return b
        return a if a.quota_us / a.period_us >= b.quota_us / b.period_us else b
    if a is None or b is None:
        return None
    return max(a, b)


def parse_cpuset(text: str) -> frozenset[int]:
    """`0-3,6` -> {0, 1, 2, 3, 6}; empty text is the empty set."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        out.update(range(int(lo), int(hi) + 1) if sep else (int(lo),))
    return frozenset(out)


def _int(value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"must be in [{lo}, {hi}]")
    return value


def _bytes_or_max(value: Any) -> int | None:
    return None if value is None else _int(value, 0, V1_UNLIMITED - 1)


def _count_or_max(value: Any) -> int | None:
    return None if value is None else _int(value, 0, 2**31 - 1)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, got {type(value).__name__}")
    return value


def _cpuset(value: Any) -> frozenset[int]:
    if isinstance(value, str):
        value = parse_cpuset(value)
    if not isinstance(value, (set, frozenset)):
        raise TypeError(f"expected a set of ids, got {type(value).__name__}")
    for v in value:
        _int(v, 0, 8191)
    return frozenset(value)


def _cpu_max(value: Any) -> CpuMax:
    if not isinstance(value, CpuMax):
        raise TypeError(f"expected CpuMax, got {type(value).__name__}")
    period = _int(value.period_us, 1000, 1_000_000)
    if value.quota_us is not None:
        _int(value.quota_us, 1000, 2**44)
    return CpuMax(value.quota_us, period)


def _io_max(value: Any) -> tuple[IoLimit, ...]:
    if isinstance(value, IoLimit):
        value = (value,)
    out = []
    for limit in value:
        if not isinstance(limit, IoLimit):
            raise TypeError(f"expected IoLimit entries, got {type(limit).__name__}")
        major, sep, minor = limit.device.partition(":")
        if not (sep and major.isdigit() and minor.isdigit()):
            raise ValueError(f"device {limit.device!r} is not MAJOR:MINOR")
        for name in IO_FIELDS:
            v = getattr(limit, name)
            if v is not None:
                _int(v, 1, 2**63 - 1)
        if any(getattr(limit, name) is not None for name in IO_FIELDS):
            out.append(limit)
    return tuple(sorted(out))


# --- codecs ----------------------------------------------------------------------------------


def _one(parse: Callable[[str], Any], fmt: Callable[[Any], str]) -> tuple[Any, Formatter]:
    return (lambda texts: parse(texts[0].strip())), (lambda value, _current: (fmt(value),))


def _max_or_int(text: str) -> int | None:
    return None if text == "max" else int(text)


def _fmt_max_or_int(value: int | None) -> str:
    return "max" if value is None else str(value)


def _page_down(value: int | None) -> int | None:
    """The kernel rounds memory limits down to a page; so do we, so a diff is stable."""
    return None if value is None else value // PAGE_SIZE * PAGE_SIZE


def _v1_bytes(text: str) -> int | None:
    value = int(text)
    return None if value < 0 or value >= V1_UNLIMITED else value


def _fmt_v1_bytes(value: int | None) -> str:
    return "-1" if value is None else str(_page_down(value))


def _fmt_v2_bytes(value: int | None) -> str:
    return _fmt_max_or_int(_page_down(value))


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares -> v2 cpu.weight as the OCI runtimes convert them today: runc >=
    1.3.2 and crun >= 1.23 (opencontainers/cgroups ConvertCPUSharesToCgroupV2Value, runc PR
    4785, Kubernetes issue 131216). A quadratic in log2(shares) through the three points
    that matter: 2 -> 1 (the minimum), 1024 -> 100 (both defaults), 262144 -> 10000 (the
    maximum). The linear formula it replaced (1 + (shares - 2) * 9999 / 262142) turned
    1024 shares into weight 39, below systemd's default 100. Every weight 1..10000 is
    reached, so a weight read back converts to shares and back to the same weight.
    (kubelet still computes the weight of its own pod and QoS cgroups linearly, with
    getCPUWeight: lab.kubelet_tree writes those as kubelet does.)"""
    if shares <= MIN_SHARES:
        return 1
    if shares >= MAX_SHARES:
        return MAX_WEIGHT
    log = math.log2(shares)
    return math.ceil(10 ** ((log * log + 125 * log) / 612 - 7 / 34))


def _weight_to_shares(weight: int) -> int:
    """The smallest shares that shares_to_weight maps to `weight` (0 = idle group)."""
    if weight <= 1:
        return MIN_SHARES
    lo, hi = MIN_SHARES, MAX_SHARES  # shares_to_weight rises monotonically: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if shares_to_weight(mid) < weight:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _blkio_from_io_weight(weight: int) -> int:
    return 10 + ((weight - 1) * 990) // 9999


def _io_weight_from_blkio(blkio: int) -> int:
    if blkio <= 10:
        return 1
    return 1 + math.ceil((blkio - 10) * 9999 / 990)


def _default_weight(text: str) -> int:
    """`default 100\\n8:0 200` or a bare `100`: the default weight."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "default":
            return int(parts[1])
        if len(parts) == 1:
            return int(parts[0])
    raise ValueError(f"no default weight in {text!r}")


def _parse_cpu_max_v2(text: str) -> CpuMax:
    quota, _, period = text.partition(" ")
    return CpuMax(_max_or_int(quota), int(period))


def _parse_cpu_max_v1(texts: Texts) -> CpuMax:
    quota = int(texts[0])
    return CpuMax(None if quota < 0 else quota, int(texts[1]))


def _fmt_cpu_max_v1(value: CpuMax, _current: Any) -> tuple[str | None, ...]:
    return ("-1" if value.quota_us is None else str(value.quota_us), str(value.period_us))


def _parse_io_max_v2(text: str) -> tuple[IoLimit, ...]:
    out = []
    for line in text.splitlines():
        device, *pairs = line.split()
        if not device:
            continue
        fields = dict(p.split("=", 1) for p in pairs)
        out.append(IoLimit(device, *(_max_or_int(fields.get(n, "max")) for n in IO_FIELDS)))
    return _io_max(out)


def _io_changes(value: tuple[IoLimit, ...], current: Any) -> list[tuple[IoLimit, IoLimit]]:
    """(old, new) for every device whose limits change, old being unlimited when unknown."""
    old = {lim.device: lim for lim in (current or ())}
    new = {lim.device: lim for lim in value}
    return [
        (old.get(d, IoLimit(d)), new.get(d, IoLimit(d)))
        for d in sorted(set(old) | set(new))
        if old.get(d, IoLimit(d)) != new.get(d, IoLimit(d))
    ]


def _fmt_io_max_v2(value: tuple[IoLimit, ...], current: Any) -> tuple[str | None, ...]:
    lines = [
        f"{new.device} " + " ".join(f"{n}={_fmt_max_or_int(getattr(new, n))}" for n in IO_FIELDS)
        for _old, new in _io_changes(value, current)
    ]
    return ("\n".join(lines) or None,)


def _parse_io_max_v1(texts: Texts) -> tuple[IoLimit, ...]:
    per_device: dict[str, dict[str, int]] = {}
    for name, text in zip(IO_FIELDS, texts, strict=True):
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                per_device.setdefault(parts[0], {})[name] = int(parts[1])
    return _io_max([IoLimit(d, *(f.get(n) for n in IO_FIELDS)) for d, f in per_device.items()])


def _fmt_io_max_v1(value: tuple[IoLimit, ...], current: Any) -> tuple[str | None, ...]:
    changes = _io_changes(value, current)
    out: list[str | None] = []
    for name in IO_FIELDS:
        lines = [
            f"{new.device} {getattr(new, name) or 0}"  # 0 removes a v1 throttle rule
            for old, new in changes
            if getattr(old, name) != getattr(new, name)
        ]
        out.append("\n".join(lines) or None)
    return tuple(out)


def _bind(controller: str, file: str, parse: Callable[[str], Any], fmt: Callable[[Any], str]):
    p, f = _one(parse, fmt)
    return Binding(controller, (file,), p, f)


def _same(controller: str, file: str, parse: Callable[[str], Any], fmt: Callable[[Any], str]):
    """The same file and format on v1 and v2: (v1 binding, v2 binding)."""
    binding = _bind(controller, file, parse, fmt)
    return {"v1": binding, "v2": binding}


def _v2_protection(name: str, merge: Merge) -> Knob:
    """memory.min/low/high: v2 only; v1 has no such knob."""
    nearest = (
        "memory.max (limit_in_bytes)"
        if name == "memory.high"
        else ("memory.soft_limit (soft_limit_in_bytes)")
    )
    return Knob(
        name,
        v1=None,
        v2=_v2_bytes("memory", name),
        validate=_bytes_or_max,
        merge=merge,
        absent={1: f"cgroup v1 has no {name}; nearest: {nearest}"},
    )


def _v2_bytes(controller: str, file: str) -> Binding:
    return _bind(controller, file, _max_or_int, _fmt_v2_bytes)


def _v1_bytes_file(file: str) -> Binding:
    return _bind("memory", file, _v1_bytes, _fmt_v1_bytes)


_THROTTLE = tuple(
    f"blkio.throttle.{d}_{k}_device"
    for d, k in (("read", "bps"), ("write", "bps"), ("read", "iops"), ("write", "iops"))
)

_TABLE: tuple[Knob, ...] = (
    # cpu.idle comes before cpu.shares: clearing idle resets shares, which are then restored.
    Knob(
        "cpu.idle",
        **_same("cpu", "cpu.idle", lambda t: t == "1", lambda v: "1" if v else "0"),
        validate=_bool,
        pins=("cpu.shares",),
    ),
    Knob(
        "cpu.shares",
        v1=_bind("cpu", "cpu.shares", int, str),
        v2=_bind(
            "cpu",
            "cpu.weight",
            lambda t: _weight_to_shares(int(t)),
            lambda v: str(shares_to_weight(v)),
        ),
        validate=lambda v: _int(v, MIN_SHARES, MAX_SHARES),
        merge=Merge.LARGER,
    ),
    Knob(
        "cpu.max",
        v1=Binding(
            "cpu", ("cpu.cfs_quota_us", "cpu.cfs_period_us"), _parse_cpu_max_v1, _fmt_cpu_max_v1
        ),
        v2=_bind(
            "cpu",
            "cpu.max",
            _parse_cpu_max_v2,
            lambda v: f"{_fmt_max_or_int(v.quota_us)} {v.period_us}",
        ),
        validate=_cpu_max,
        merge=Merge.LOOSER,
    ),
    Knob(
        "cpu.max.burst",
        v1=_bind("cpu", "cpu.cfs_burst_us", int, str),
        v2=_bind("cpu", "cpu.max.burst", int, str),
        validate=lambda v: _int(v, 0, 2**44),
        merge=Merge.LARGER,
    ),
    Knob(
        "cpuset.cpus",
        **_same("cpuset", "cpuset.cpus", parse_cpuset, format_cpuset),
        validate=_cpuset,
        merge=Merge.LOOSER,
    ),
    Knob(
        "cpuset.mems",
        **_same("cpuset", "cpuset.mems", parse_cpuset, format_cpuset),
        validate=_cpuset,
        merge=Merge.LOOSER,
    ),
    _v2_protection("memory.min", Merge.LARGER),
    _v2_protection("memory.low", Merge.LARGER),
    _v2_protection("memory.high", Merge.LOOSER),
    Knob(
        "memory.max",
        v1=_v1_bytes_file("memory.limit_in_bytes"),
        v2=_v2_bytes("memory", "memory.max"),
        validate=_bytes_or_max,
        merge=Merge.LOOSER,
    ),
    Knob(
        "memory.soft_limit",
        v1=_v1_bytes_file("memory.soft_limit_in_bytes"),
        v2=None,
        validate=_bytes_or_max,
        merge=Merge.LOOSER,
        absent={2: "cgroup v2 has no soft limit; nearest: memory.low or memory.high"},
    ),
    Knob(
        "io.weight",
        v1=_bind(
            "blkio",
            "blkio.bfq.weight",
            lambda t: _io_weight_from_blkio(_default_weight(t)),
            lambda v: str(_blkio_from_io_weight(v)),
        ),
        v2=_bind("io", "io.weight", _default_weight, lambda v: f"default {v}"),
        validate=lambda v: _int(v, 1, MAX_WEIGHT),
        merge=Merge.LARGER,
    ),
    Knob(
        "io.max",
        v1=Binding("blkio", _THROTTLE, _parse_io_max_v1, _fmt_io_max_v1),
        v2=Binding("io", ("io.max",), lambda t: _parse_io_max_v2(t[0]), _fmt_io_max_v2),
        validate=_io_max,
    ),
    Knob(
        "pids.max",
        **_same("pids", "pids.max", _max_or_int, _fmt_max_or_int),
        validate=_count_or_max,
        merge=Merge.LOOSER,
    ),
    Knob(
        "freeze",
        v1=_bind(
            "freezer",
            "freezer.state",
            lambda t: t != "THAWED",
            lambda v: "FROZEN" if v else "THAWED",
        ),
        v2=_bind("", "cgroup.freeze", lambda t: t == "1", lambda v: "1" if v else "0"),
        validate=_bool,
    ),
)

KNOBS: Mapping[str, Knob] = {k.name: k for k in _TABLE}
# Position in the table: the order knobs of one cgroup are written in when raising.
ORDER: Mapping[str, int] = {k.name: i for i, k in enumerate(_TABLE)}


def knob(name: str) -> Knob:
    try:
        return KNOBS[name]
    except KeyError:
        raise KnobError(name, f"unknown knob; known: {', '.join(KNOBS)}") from None
