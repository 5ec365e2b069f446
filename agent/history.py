"""The predictor's history of use and the CPU margin, kept in the state dir across restarts
of the agent.

Memory's demand never falls below its 24-h peak, and CPU's below its 3-h peak: a restart
that forgot them would offer batch what online used an hour ago. So the loop saves the
predictor's series to `<state dir>/history.json` once a minute and when it stops, and reads
them back when it starts. Times are saved as Unix time and turned back into the loop's
monotonic clock on reading, so the windows expire as if the agent had never stopped.

The margin and its controller's memory go with them: a node restored from its history has
no cold start, so a restart under interference would otherwise drop the margin to its
initial value (0 by default) until the controller's integral built up again. It comes back
only for the same indicator, held within the margin's bounds in force.

With no file the node starts as a new one (with its cold-start allowances). A file that is
unreadable, not colocd's, of another node, or older than `MAX_AGE_S` is set aside with one
line of warning, and the node starts as a new one too.

Each GPU's online SM series and its window of online GPU memory are kept too, for the GPUs
known by UUID (one matched by its index may be another GPU after a restart): without them a
restart would offer batch the GPU memory online held an hour before. So are their surges
and the batch pods frozen on them (on those GPUs alone): a restart keeps a pod frozen
through the thaw hysteresis, and its `maxFrozen` clock from the first freeze.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import ConfigDict, Field, ValidationError, model_validator

from agent.errors import InputError
from agent.inputs import first_problem, parse_json, read_text
from agent.state_files import replace_file
from qos.decide import BrainState
from qos.demand import PredictorState
from qos.gpu import BY_INDEX, Frozen, GpuBrain, Surge
from qos.margin import MarginState, PidState
from qos.predictor import Series, Window
from qos.settings import Indicator, MarginSettings
from qos.strict_numbers import StrictNumbers
from qos.units import format_fraction

FILENAME = "history.json"
FORMAT = 1
# Older than this, the node may have changed while the agent was away: start afresh.
MAX_AGE_S = 600.0
# Four series of at most 10,800 samples each: a few MiB at most.
MAX_HISTORY_BYTES = 16 * 2**20
SAVE_EVERY_S = 60.0

Use = Annotated[float, Field(ge=0.0)]


class _Model(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class WindowFile(_Model):
    """One window of readings, its times in Unix seconds."""

    times: list[float]
    values: list[Use]

    @model_validator(mode="after")
    def _aligned(self) -> WindowFile:
        if len(self.times) != len(self.values):
            raise ValueError("times and values differ in length")
        if any(b <= a for a, b in pairwise(self.times)):
            raise ValueError("times are not increasing")
        return self


class SeriesFile(WindowFile):
    """One series: its window and what was learned from it."""

    burst: Use = 0.0
    step: Use = 0.0
    learned_at: float | None = None
    last: Use | None = None
    first_at: float | None = None
    regime_at: float | None = None
    changes: Annotated[int, Field(ge=0)] = 0
    changed_at: float | None = None


class SurgeFile(_Model):
    """Online's surge on one GPU: since when, why, and since when it has been calm."""

    since: float
    why: str
    calm_since: float | None = None


class GpuFile(_Model):
    """One GPU's online SM use, the window of online's GPU memory, and its surge."""

    online: SeriesFile | None = None
    memory: WindowFile | None = None
    surge: SurgeFile | None = None


class FrozenFile(_Model):
    """A batch pod frozen off GPUs (by UUID): its UID, since when, on which, and why."""

    uid: str
    since: float
    devices: list[str]
    why: str


class MarginFile(_Model):
    """The applied margin (a fraction of node CPU) and the controller's memory."""

    indicator: Indicator
    fraction: Annotated[float, Field(ge=0.0, le=1.0)]
    integral: float
    last_input: Use | None = None
    at: float | None = None  # Unix time of the last indicator reading fed to it


class HistoryFile(_Model):
    format: Literal[1]
    node: str
    saved_at: float  # Unix time
    cpu_system: SeriesFile
    cpu_online: SeriesFile
    memory_system: SeriesFile
    memory_online: SeriesFile
    regime_at: float | None = None
    margin: MarginFile | None = None  # None: the margin had not started
    gpus: dict[str, GpuFile] = Field(default_factory=dict)  # by UUID
    frozen: dict[str, FrozenFile] = Field(default_factory=dict)  # by pod key


class History(NamedTuple):
    predictor: PredictorState
    margin: MarginState | None = None  # None: the settings' initial margin
    age: float | None = None  # seconds since it was saved; None: a new node's
    gpus: GpuBrain = GpuBrain()  # the GPUs with a UUID: windows, surges, pods frozen

    def describe(self) -> str:
        """One line on what came back, for the log."""
        p = self.predictor
        samples = ", ".join(
            f"{name} {len(s.window)}"
            for name, s in (("CPU", p.cpu_online), ("memory", p.memory_online))
        )
        margin = "initial" if self.margin is None else format_fraction(self.margin.fraction)
        gpus = f"; {len(self.gpus.online)} GPUs" if self.gpus.online else ""
        if self.gpus.frozen:
            gpus += f"; batch pods frozen: {', '.join(sorted(self.gpus.frozen))}"
        return f"saved {self.age or 0:.0f}s ago: online samples {samples}; margin {margin}{gpus}"


@dataclass(frozen=True, slots=True)
class Clocks:
    """The loop's monotonic clock and the wall clock, read at one moment."""

    monotonic: float
    wall: float

    def to_wall(self, t: float) -> float:
        return t - self.monotonic + self.wall

    def from_wall(self, t: float) -> float:
        return t - self.wall + self.monotonic


def _maybe(convert: Callable[[float], float], t: float | None) -> float | None:
    return None if t is None else convert(t)


def _series_file(s: Series, clocks: Clocks) -> SeriesFile:
    return SeriesFile(
        **_wall_window(s.window, clocks),
        burst=s.burst,
        step=s.step,
        learned_at=_maybe(clocks.to_wall, s.learned_at),
        last=s.last,
        first_at=_maybe(clocks.to_wall, s.first_at),
        regime_at=_maybe(clocks.to_wall, s.regime_at),
        changes=s.changes,
        changed_at=_maybe(clocks.to_wall, s.changed_at),
    )


def _wall_window(w: Window, clocks: Clocks) -> dict[str, list[float]]:
    """A window's fields for the file, its times in Unix seconds."""
    return {"times": [clocks.to_wall(t) for t in w.times], "values": list(w.values)}


def _window_file(w: Window, clocks: Clocks) -> WindowFile:
    return WindowFile(**_wall_window(w, clocks))


def _window(f: WindowFile, clocks: Clocks) -> Window:
    times = tuple(clocks.from_wall(t) for t in f.times)
    return Window(times, tuple(f.values), tuple(sorted(f.values)))


def _gpu_files(gpus: GpuBrain, clocks: Clocks) -> dict[str, GpuFile]:
    """The GPUs known by UUID: one matched by index may be another GPU after a restart."""
    known = set(gpus.online) | set(gpus.memory) | set(gpus.surges)
    return {
        k: GpuFile(
            online=None if k not in gpus.online else _series_file(gpus.online[k], clocks),
            memory=None if k not in gpus.memory else _window_file(gpus.memory[k], clocks),
            surge=None if k not in gpus.surges else _surge_file(gpus.surges[k], clocks),
        )
        for k in sorted(known)
        if not k.startswith(BY_INDEX)
    }


def _surge_file(surge: Surge, clocks: Clocks) -> SurgeFile:
    return SurgeFile(
        since=clocks.to_wall(surge.since),
        why=surge.why,
        calm_since=_maybe(clocks.to_wall, surge.calm_since),
    )


def _surge(f: SurgeFile, clocks: Clocks) -> Surge:
    return Surge(clocks.from_wall(f.since), f.why, _maybe(clocks.from_wall, f.calm_since))


def _frozen_files(gpus: GpuBrain, clocks: Clocks) -> dict[str, FrozenFile]:
    """The pods frozen on GPUs known by UUID; one frozen on none of those is left out (the
    journal thaws it after a restart)."""
    out = {}
    for pod, f in sorted(gpus.frozen.items()):
        devices = sorted(d for d in f.devices if not d.startswith(BY_INDEX))
        if devices:
            out[pod] = FrozenFile(
                uid=f.uid, since=clocks.to_wall(f.since), devices=devices, why=f.why
            )
    return out


def _gpus(files: dict[str, GpuFile], frozen: dict[str, FrozenFile], clocks: Clocks) -> GpuBrain:
    return GpuBrain(
        online={k: _series(f.online, clocks) for k, f in files.items() if f.online is not None},
        memory={k: _window(f.memory, clocks) for k, f in files.items() if f.memory is not None},
        surges={k: _surge(f.surge, clocks) for k, f in files.items() if f.surge is not None},
        frozen={
            pod: Frozen(f.uid, clocks.from_wall(f.since), frozenset(f.devices), f.why)
            for pod, f in frozen.items()
        },
    )


def _series(f: SeriesFile, clocks: Clocks) -> Series:
    return Series(
        window=_window(f, clocks),
        burst=f.burst,
        step=f.step,
        learned_at=_maybe(clocks.from_wall, f.learned_at),
        last=f.last,
        first_at=_maybe(clocks.from_wall, f.first_at),
        regime_at=_maybe(clocks.from_wall, f.regime_at),
        changes=f.changes,
        changed_at=_maybe(clocks.from_wall, f.changed_at),
    )


def _margin_file(margin: MarginState, indicator: Indicator, clocks: Clocks) -> MarginFile:
    return MarginFile(
        indicator=indicator,
        fraction=margin.fraction,
        integral=margin.pid.integral,
        last_input=margin.pid.last_input,
        at=_maybe(clocks.to_wall, margin.at),
    )


def _margin(f: MarginFile | None, clocks: Clocks, settings: MarginSettings) -> MarginState | None:
    """The saved margin within today's bounds; None when it was not saved or watched
    another indicator (its integral would mean nothing)."""
    if f is None or f.indicator is not settings.indicator:
        return None
    low, high = settings.min_fraction, settings.max_fraction
    return MarginState(
        fraction=min(high, max(low, f.fraction)),
        pid=PidState(min(high, max(low, f.integral)), f.last_input),
        at=_maybe(clocks.from_wall, f.at),
    )


def save_history(
    state_dir: Path, node: str, brain: BrainState, indicator: Indicator, clocks: Clocks
) -> None:
    """Replace the history file atomically; OSError when it cannot be written."""
    state = brain.predictor
    history = HistoryFile(
        format=FORMAT,
        node=node,
        saved_at=clocks.wall,
        cpu_system=_series_file(state.cpu_system, clocks),
        cpu_online=_series_file(state.cpu_online, clocks),
        memory_system=_series_file(state.memory_system, clocks),
        memory_online=_series_file(state.memory_online, clocks),
        regime_at=_maybe(clocks.to_wall, state.regime_at),
        margin=None if brain.margin is None else _margin_file(brain.margin, indicator, clocks),
        gpus=_gpu_files(brain.gpus, clocks),
        frozen=_frozen_files(brain.gpus, clocks),
    )
    replace_file(state_dir, FILENAME, history.model_dump_json() + "\n")


def load_history(
    state_dir: Path, node: str, clocks: Clocks, margin: MarginSettings
) -> tuple[History, str]:
    """The saved series and margin, or a new node's with why, one line; "" when restored."""
    path = state_dir / FILENAME
    fresh = History(PredictorState())
    try:
        history = HistoryFile.model_validate(parse_json(read_text(path, MAX_HISTORY_BYTES)))
    except InputError as err:
        if err.missing:
            return fresh, ""
        return fresh, f"history {path} not read ({err.reason}): starting afresh"
    except ValidationError as err:
        why = f"not a colocd history file ({first_problem(err, 'history')})"
        return fresh, f"history {path} not read ({why}): starting afresh"
    age = clocks.wall - history.saved_at
    if history.node != node:
        why = f"saved by node {history.node!r}, this is {node!r}"
    elif not 0.0 <= age <= MAX_AGE_S:
        why = f"saved {age:.0f}s ago, not within {MAX_AGE_S:g}s"
    else:
        state = PredictorState(
            cpu_system=_series(history.cpu_system, clocks),
            cpu_online=_series(history.cpu_online, clocks),
            memory_system=_series(history.memory_system, clocks),
            memory_online=_series(history.memory_online, clocks),
            regime_at=_maybe(clocks.from_wall, history.regime_at),
        )
        restored_margin = _margin(history.margin, clocks, margin)
        return History(state, restored_margin, age, _gpus(history.gpus, history.frozen, clocks)), ""
    return fresh, f"history {path} set aside ({why}): starting afresh"
