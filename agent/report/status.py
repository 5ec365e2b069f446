"""The status file: what the running agent last decided and did, for `colocd status`.

The loop writes `<state dir>/status.json` after every tick, atomically (a temporary file
renamed over the old one), so a reader sees the previous or the new status, never half of
one. It answers "why is batch-cpu this value?": each budget carries its one-line formula,
next to the margin, the degraded reasons, the last apply report and the fast path's
clamps. A file older than a few ticks means the agent is not running (or is stuck).
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError

from agent.errors import InputError, StatusError
from agent.inputs import first_problem, parse_json, read_text
from agent.state_files import replace_file
from qos.strict_numbers import StrictNumbers

__all__ = [
    "FILENAME",
    "ApplyStatus",
    "BudgetStatus",
    "ClampStatus",
    "FastPathStatus",
    "GpuDeviceStatus",
    "GpuStatus",
    "MarginStatus",
    "Status",
    "read_status",
    "stale_after",
    "staleness",
    "write_status",
]

FILENAME = "status.json"
FORMAT = 1
# A status older than this many ticks (and at least STALE_FLOOR_S) is stale.
STALE_TICKS = 3
STALE_FLOOR_S = 5.0
# Writer and reader share the host's clock; allow for rounding, not for skew.
FUTURE_SLACK_S = 1.0
# A status file is a few KiB; anything much bigger was not written by colocd.
MAX_STATUS_BYTES = 2**20


class _Model(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class BudgetStatus(_Model):
    resource: str
    name: str  # the extended resource, e.g. colocd.io/batch-cpu
    amount: int
    unit: str  # millicores, bytes, hundredths
    degraded: bool
    reason: str
    predicted_online: float | None = None


class MarginStatus(_Model):
    fraction: float
    millicores: int
    indicator: float | None
    reason: str


class ApplyStatus(_Model):
    counts: dict[str, int] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)  # failed writes, one line each


class ClampStatus(_Model):
    at: float  # unix time
    trigger: str  # usage | pressure
    reaction_s: float
    cap: str  # the cap applied, in words


class FastPathStatus(_Model):
    mode: str  # psi-trigger | interval | off
    detail: str = ""
    clamps: int = 0  # since the agent started
    recent: list[ClampStatus] = Field(default_factory=list)  # the last few, oldest first


class GpuDeviceStatus(_Model):
    index: int
    uuid: str | None = None
    online_percent: float | None = None  # SM time of every process not batch
    batch_percent: float | None = None
    online_memory_bytes: float | None = None
    batch_memory_bytes: float | None = None
    memory_total_bytes: float | None = None
    offered: int | None = None  # this GPU's share of batch-gpu, hundredths
    surged: bool = False
    reason: str = ""  # the share's formula
    error: str | None = None  # why NVML could not read it this tick


class GpuStatus(_Model):
    devices: list[GpuDeviceStatus] = Field(default_factory=list)
    processes: list[str] = Field(default_factory=list)  # each GPU process and its pod
    mismatches: list[str] = Field(default_factory=list)  # a process on a GPU not given to it
    frozen: list[str] = Field(default_factory=list)  # why each frozen batch pod is frozen
    thawed: list[str] = Field(default_factory=list)  # thawed this tick, and why
    notes: list[str] = Field(default_factory=list)


class Status(_Model):
    format: int = FORMAT
    node: str
    written_at: float  # unix time
    tick_s: float = Field(gt=0)
    ticks: int
    pods: dict[str, int]  # tier -> count
    budgets: list[BudgetStatus]
    margin: MarginStatus
    batch_tier: list[str] = Field(default_factory=list)  # the batch tier settings' reasons
    degraded: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    evictions: list[str] = Field(default_factory=list)
    apply: ApplyStatus = Field(default_factory=ApplyStatus)
    fast_path: FastPathStatus = Field(default_factory=lambda: FastPathStatus(mode="off"))
    gpu: GpuStatus | None = None  # None: no GPU read on this node

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.written_at


def stale_after(tick_s: float) -> float:
    return max(STALE_FLOOR_S, STALE_TICKS * tick_s)


def staleness(status: Status, now: float) -> str | None:
    """Why `status` does not show the agent as it is now; None when it is fresh. A time
    stamp in the future is not fresh: the clock was set back, or colocd did not write it."""
    age = status.age(now)
    if age < -FUTURE_SLACK_S:
        return (
            f"stamped {-age:g}s in the future: the clock was set back or another program "
            "wrote the file"
        )
    limit = stale_after(status.tick_s)
    if age > limit:
        return f"{age:.0f}s old (stale after {limit:g}s): the agent is not running or is stuck"
    return None


def write_status(state_dir: Path, status: Status) -> Path:
    """Replace the status file atomically."""
    try:
        return replace_file(state_dir, FILENAME, status.model_dump_json() + "\n")
    except OSError as err:
        path = state_dir / FILENAME
        raise StatusError(f"write status {path}: {err.strerror or err}") from err


def read_status(state_dir: Path) -> Status:
    path = state_dir / FILENAME
    try:
        text = read_text(path, MAX_STATUS_BYTES)
    except InputError as err:
        if err.missing:
            raise StatusError(
                f"read status {path}: no status file; the agent is not running here "
                "(or uses another --state-dir)"
            ) from None
        raise StatusError(f"read status {path}: {err.reason}") from err
    try:
        status = Status.model_validate(parse_json(text))
    except InputError as err:
        raise StatusError(f"read status {path}: {err.reason}") from err
    except ValidationError as err:
        why = first_problem(err, "status")
        raise StatusError(f"read status {path}: not a colocd status file ({why})") from err
    if status.format != FORMAT:
        raise StatusError(f"read status {path}: format {status.format}, expected {FORMAT}")
    return status
