"""GPUs, one device at a time: the batch-gpu budget, and batch frozen when online needs a GPU.

Per GPU, in percent of the device (its hundredths):

    offered = 100 x max_fraction - predicted online - margin, capped by memory

- predicted online: the same predictor as CPU (the window's level and the learned burst), on the SM
  utilisation of everything that is not batch on this GPU;
- margin: the same PID controller as the CPU margin (`qos.margin`), per GPU, on how busy the
  GPU is (online + batch SM %) while online runs on it, held to `busy_target_percent`; its
  floor is the fixed reserve;
- memory: batch is never offered memory online used within the window: the window's peak of
  online's GPU memory (not a percentile), the reserve and `1 - max_fraction` are kept, and
  the share left caps the offer.

The node's `colocd.io/batch-gpu` is the sum over its GPUs (a GPU NVML could not read offers 0).

Protection, per GPU: online SM utilisation at or above `freeze_utilization_percent`, or its
memory share at or above `freeze_memory_fraction`, surges the GPU, and every batch pod with a
process on it is frozen (online, system and dedicated pods never are). The surge ends once
online has stayed below threshold - hysteresis for `thaw_after_seconds`; then its pods are
thawed, unless another surged GPU still holds them. A pod frozen longer than
`max_frozen_seconds` is evicted (frozen, it still holds its GPU memory), and so is the batch
pod with the most memory on a GPU whose memory online would otherwise be short of.
Missing readings are no evidence: they neither surge nor calm a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from qos.budget import Budget, Resource, Terms
from qos.margin import MarginState, initial_margin, update_margin
from qos.plan import Eviction, GpuDevicePlan, GpuFreeze, GpuPlan
from qos.predictor import Series, Window, predict
from qos.samples import GpuDeviceReading, GpuReading, clean, reading_time
from qos.settings import Indicator, MarginSettings, QosSettings
from qos.state import NodeState, PodState
from qos.tiers import Tier
from qos.units import Unit, format_amount, format_fraction

# Why a pod was evicted off a GPU (a class, for the metric's label).
FROZEN_TOO_LONG = "frozen_too_long"
GPU_MEMORY = "gpu_memory"

__all__ = ["FROZEN_TOO_LONG", "GPU_MEMORY", "GpuBrain", "GpuDecision", "decide_gpus", "device_key"]


@dataclass(frozen=True, slots=True)
class Surge:
    since: float
    why: str
    calm_since: float | None = None


@dataclass(frozen=True, slots=True)
class Frozen:
    uid: str
    since: float
    devices: frozenset[str]
    why: str


@dataclass(frozen=True, slots=True)
class GpuBrain:
    """Per GPU (keyed by UUID, else index): windows, margin, surge; per pod: frozen since."""

    online: Mapping[str, Series] = field(default_factory=dict)
    memory: Mapping[str, Window] = field(default_factory=dict)
    margins: Mapping[str, MarginState] = field(default_factory=dict)
    surges: Mapping[str, Surge] = field(default_factory=dict)
    frozen: Mapping[str, Frozen] = field(default_factory=dict)
    evicted: Mapping[str, float] = field(default_factory=dict)  # pod -> when


@dataclass(frozen=True, slots=True)
class GpuDecision:
    budget: Budget
    plan: GpuPlan
    evictions: tuple[Eviction, ...]
    state: GpuBrain


BY_INDEX = "index-"  # the key of a GPU that reports no UUID


def device_key(d: GpuDeviceReading) -> str:
    return d.uuid or f"{BY_INDEX}{d.index}"


def _margin_settings(settings: QosSettings) -> MarginSettings:
    g = settings.gpu
    top = max(g.reserve_fraction, g.max_margin_fraction)
    return settings.margin.model_copy(
        update={
            "indicator": Indicator.LATENCY,
            "target": g.busy_target_percent,
            "min_fraction": g.reserve_fraction,
            "max_fraction": top,
            "initial_fraction": g.reserve_fraction,
        }
    )


def _pct(value: float) -> str:
    return f"{value:.0f}%"


@dataclass(slots=True)
class _Work:
    """The new state being built (dicts copied once, frozen again at the end)."""

    online: dict[str, Series]
    memory: dict[str, Window]
    margins: dict[str, MarginState]
    surges: dict[str, Surge]


def _budget_of(
    d: GpuDeviceReading, at: float, w: _Work, settings: QosSettings, surged: bool
) -> GpuDevicePlan:
    key = device_key(d)
    p, g = settings.predictor, settings.gpu
    name = f"GPU {d.index}"
    if d.error is not None:
        return GpuDevicePlan(d.index, d.uuid, 0, None, 0.0, None, surged, f"{name} 0: {d.error}")
    online = clean(d.online_percent, 100.0)
    total = clean(d.memory_total_bytes)
    online_mem = clean(d.online_memory_bytes, total)
    if online is not None:
        w.online[key] = w.online.get(key, Series()).observe(at, online, p)
    if online_mem is not None:
        w.memory[key] = w.memory.get(key, Window()).add(
            at, online_mem, p.window_seconds, p.max_samples
        )
    # No cold-start allowance: a GPU's batch pods are frozen at once if online surges.
    pred = predict(w.online.get(key, Series()), online, at, 0.0, p)
    busy = None
    if online is not None:
        batch = clean(d.batch_percent, 100.0) or 0.0
        busy = min(100.0, online + batch) if online > 0 else 0.0
    margins = _margin_settings(settings)
    state, margin = update_margin(
        w.margins.get(key) or initial_margin(margins), busy, at, margins, f"{name} busy"
    )
    w.margins[key] = state
    peak = w.memory[key].peak if key in w.memory else None
    if pred.value is None:
        why = f"{name} 0: online GPU use never read, so nothing is offered"
        return GpuDevicePlan(d.index, d.uuid, 0, None, margin.fraction, peak, surged, why)
    raw = 100 * settings.reclaim.gpu_max_fraction - pred.value - 100 * margin.fraction
    formula = (
        f"100 x {settings.reclaim.gpu_max_fraction:g} - online {_pct(pred.value)} "
        f"({pred.describe(p, _pct)}) - margin {format_fraction(margin.fraction)} "
        f"({margin.reason})"
    )
    if total and peak is not None:
        free = total * (settings.reclaim.gpu_max_fraction - g.reserve_fraction) - peak
        bound = 100 * free / total
        if bound < raw:
            raw = bound
            formula += (
                f"; capped at {_pct(max(0.0, bound))} by GPU memory: online peak "
                f"{format_amount(peak, Unit.BYTES)} in the window of "
                f"{format_amount(total, Unit.BYTES)}"
            )
    if surged:
        raw = 0.0
        formula += "; 0 while online surges on it"
    amount = max(0, min(100, math.floor(raw))) if math.isfinite(raw) else 0
    why = f"{name} {amount} = {formula}"
    return GpuDevicePlan(d.index, d.uuid, amount, pred.value, margin.fraction, peak, surged, why)


def _surge(
    d: GpuDeviceReading, at: float, old: Surge | None, settings: QosSettings
) -> tuple[Surge | None, str]:
    """The GPU's surge after this reading, and why it ended ("" while it goes on)."""
    g = settings.gpu
    online = clean(d.online_percent, 100.0)
    total = clean(d.memory_total_bytes)
    mem = clean(d.online_memory_bytes, total)
    share = None if mem is None or not total else mem / total
    if d.error is not None or (online is None and share is None):
        return old, ""  # no evidence either way
    over = []
    if online is not None and online >= g.freeze_utilization_percent:
        over.append(f"online SM {_pct(online)} >= {_pct(g.freeze_utilization_percent)}")
    if share is not None and share >= g.freeze_memory_fraction:
        over.append(
            f"online memory {format_fraction(share)} >= {format_fraction(g.freeze_memory_fraction)}"
        )
    if over:
        why = f"GPU {d.index} {' and '.join(over)}"
        return Surge(at if old is None else old.since, why), ""
    if old is None:
        return None, ""
    util_line = g.freeze_utilization_percent - g.thaw_hysteresis_percent
    mem_line = g.freeze_memory_fraction - g.thaw_hysteresis_percent / 100
    calm = (online is None or online < util_line) and (share is None or share < mem_line)
    if not calm:
        return replace(old, calm_since=None), ""
    calm_since = old.calm_since if old.calm_since is not None else at
    if at - calm_since >= g.thaw_after_seconds:
        shown = "not read" if online is None else _pct(online)
        why = (
            f"GPU {d.index} online SM {shown} below {_pct(util_line)} (freeze threshold - "
            f"hysteresis) for {at - calm_since:.0f}s"
        )
        return None, why
    return replace(old, calm_since=calm_since), ""


def decide_gpus(
    reading: GpuReading, node: NodeState, state: GpuBrain, settings: QosSettings, now: float
) -> GpuDecision:
    """The batch-gpu budget from per-device readings, and the freezes, thaws and evictions."""
    at = reading_time(reading.at)
    at = now if at is None else at
    w = _Work(dict(state.online), dict(state.memory), dict(state.margins), dict(state.surges))
    devices = reading.per_device
    keys = {device_key(d) for d in devices}
    for kept in (w.online, w.memory, w.margins, w.surges):  # GPUs that left the node
        for k in [k for k in kept if k not in keys]:
            del kept[k]

    ended: dict[str, str] = {}
    for d in devices:
        key = device_key(d)
        surge, why = _surge(d, at, w.surges.get(key), settings)
        if surge is None:
            w.surges.pop(key, None)
        else:
            w.surges[key] = surge
        if why:
            ended[key] = why
    plans = tuple(_budget_of(d, at, w, settings, device_key(d) in w.surges) for d in devices)

    pods = {p.pod.key: p for p in node.pods}
    batch = {k for k, p in pods.items() if p.tier is Tier.BATCH}
    # A pod deleted and created again under its name is another pod: its freeze is not ours.
    was = {k: f for k, f in state.frozen.items() if k in pods and pods[k].pod.uid == f.uid}
    frozen: dict[str, Frozen] = {}
    freezes: list[GpuFreeze] = []
    notes: list[str] = []
    users: dict[str, set[str]] = {}  # pod -> the GPUs it uses now
    for d in devices:
        for pod, _mem in d.batch_pods:
            users.setdefault(pod, set()).add(device_key(d))
    for key, surge in w.surges.items():
        for d in devices:
            if device_key(d) != key:
                continue
            for pod, _mem in d.batch_pods:
                if pod not in batch:
                    if pod in pods:
                        notes.append(f"{pod} on surged GPU {d.index} is not batch: never frozen")
                    continue
                old = frozen.get(pod) or was.get(pod)
                since = now if old is None else old.since
                why = old.why if old is not None else surge.why
                devs = (old.devices if old is not None else frozenset()) | {key}
                frozen[pod] = Frozen(pods[pod].pod.uid, since, devs, why)
    # A frozen pod stays frozen while a surged GPU holds it, or while its GPUs cannot be
    # read (no evidence of calm: fail towards online).
    for pod, f in was.items():
        if pod in frozen or pod not in batch:
            continue
        held = [k for k in f.devices if k in w.surges or k not in keys or _unread(devices, k)]
        if held:
            frozen[pod] = f
    for pod, f in sorted(frozen.items()):
        new = pod not in was
        word = "freeze" if new else "keep frozen"
        freezes.append(
            GpuFreeze(pod, f.uid, True, new, f"{word} {pod} (batch on the GPU): {f.why}")
        )
    for pod, f in sorted(was.items()):
        if pod in frozen:
            continue
        why = "; ".join(ended[k] for k in sorted(f.devices) if k in ended) or (
            "no GPU it used surges any more"
        )
        freezes.append(GpuFreeze(pod, f.uid, False, True, f"thaw {pod}: {why}"))

    chosen, evicted = _evictions(devices, w, pods, frozen, state, settings, now)
    evictions = tuple(e for e, _ in chosen)
    amount = sum(p.amount for p in plans)
    cap = 100 * len(devices)
    parts = "; ".join(p.reason for p in plans)
    budget = Budget(
        Resource.GPU,
        amount,
        cap,
        False,
        f"{Resource.GPU.extended_name} {format_amount(amount, Unit.HUNDREDTHS)} = the sum over "
        f"{len(devices)} GPU(s): {parts}",
        Terms(
            capacity=float(cap),
            max_fraction=settings.reclaim.gpu_max_fraction,
            system=0.0,
            online=sum(p.predicted_online_percent or 0.0 for p in plans),
            margin=sum(100 * p.margin_fraction for p in plans),
            bound=float(amount),
        ),
    )
    new_state = GpuBrain(w.online, w.memory, w.margins, w.surges, frozen, evicted)
    plan = GpuPlan(plans, tuple(freezes), tuple(notes), tuple((e.pod, k) for e, k in chosen))
    return GpuDecision(budget, plan, evictions, new_state)


def _unread(devices: tuple[GpuDeviceReading, ...], key: str) -> bool:
    return any(device_key(d) == key and d.error is not None for d in devices)


def _evictions(  # noqa: PLR0917 (the decision's parts, in one order)
    devices: tuple[GpuDeviceReading, ...],
    w: _Work,
    pods: Mapping[str, PodState],
    frozen: Mapping[str, Frozen],
    state: GpuBrain,
    settings: QosSettings,
    now: float,
) -> tuple[tuple[tuple[Eviction, str], ...], dict[str, float]]:
    """Frozen too long, or holding GPU memory online would be short of; each pod once."""
    e = settings.eviction
    g = settings.gpu
    evicted = {p: t for p, t in state.evicted.items() if p in pods}
    wanted: dict[str, tuple[str, str]] = {}
    for pod, f in sorted(frozen.items()):
        lasted = now - f.since
        if lasted >= g.max_frozen_seconds:
            wanted[pod] = (
                FROZEN_TOO_LONG,
                f"frozen on the GPU for {lasted:.0f}s (limit {g.max_frozen_seconds:g}s): {f.why}",
            )
    for d in devices:
        total = clean(d.memory_total_bytes)
        key = device_key(d)
        peak = w.memory[key].peak if key in w.memory else None
        sizes = [(m, pod) for pod, m in d.batch_pods if m is not None and pod in pods]
        if not total or peak is None or not sizes:
            continue
        need = peak + g.reserve_fraction * total
        held = sum(m for m, _ in sizes)
        if need + held > total:
            _, pod = max(sizes, key=lambda s: (s[0], s[1]))
            if pods[pod].tier is Tier.BATCH:
                wanted.setdefault(
                    pod,
                    (
                        GPU_MEMORY,
                        f"GPU {d.index} memory: online peak {format_amount(peak, Unit.BYTES)} + "
                        f"reserve {format_fraction(g.reserve_fraction)} + batch "
                        f"{format_amount(held, Unit.BYTES)} > {format_amount(total, Unit.BYTES)}",
                    ),
                )
    out = []
    if not e.enabled:
        return (), evicted
    mode = "dry-run: would evict" if e.dry_run else "evict"
    for pod, (kind, why) in wanted.items():
        if pod in evicted:
            continue
        p = pods[pod].pod
        out.append((Eviction(pod, p.uid, p.priority or 0, e.dry_run, f"{mode} {pod}: {why}"), kind))
        evicted[pod] = now
    return tuple(out), evicted
