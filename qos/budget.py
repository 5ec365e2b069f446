"""Budgets: how much of each resource batch may have, and the plain-words reason why.

    reclaimable = capacity x max_fraction - system - online - margin, clamped to [0, capacity]

`system` is the larger of the configured reservation and the system tier's predicted use,
less what kubelet already keeps outside capacity for node daemons (never below 0);
`online` is the online tiers' predicted demand (dedicated pods' exclusive cores counted
whole); `margin` is the PID-sized CPU margin or the fixed memory/GPU margin. When a
resource's readings go stale the budget decays from its last fresh value to 0 over
`degrade_seconds` (degrade), and the reason says so. Amounts are integers in base units
(millicores, bytes, hundredths of a GPU); nothing that is not a finite number gets through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from qos.pod import BATCH_CPU, BATCH_GPU, BATCH_MEMORY
from qos.settings import ReclaimSettings
from qos.units import Unit, format_amount


class Resource(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    GPU = "gpu"

    @property
    def unit(self) -> Unit:
        return _UNITS[self]

    @property
    def extended_name(self) -> str:
        return _EXTENDED[self]


_UNITS = {Resource.CPU: Unit.MILLICORES, Resource.MEMORY: Unit.BYTES, Resource.GPU: Unit.HUNDREDTHS}
_EXTENDED = {Resource.CPU: BATCH_CPU, Resource.MEMORY: BATCH_MEMORY, Resource.GPU: BATCH_GPU}


@dataclass(frozen=True, slots=True)
class Terms:
    """The formula's terms for one resource; each `*_why` says where its number came from."""

    capacity: float
    max_fraction: float
    system: float
    online: float
    margin: float
    system_why: str = ""
    online_why: str = ""
    margin_why: str = ""
    capacity_why: str = ""  # where the capacity came from (e.g. "Node allocatable")
    # An extra upper bound that is not a term of the formula (GPU memory), with its reason.
    bound: float | None = None
    bound_why: str = ""

    @property
    def raw(self) -> float:
        return self.capacity * self.max_fraction - self.system - self.online - self.margin


@dataclass(frozen=True, slots=True)
class Budget:
    resource: Resource
    amount: int
    capacity: int
    degraded: bool
    reason: str
    # The formula's terms when the budget was computed from fresh readings (reports show
    # predicted online demand from them); None for held, degraded and unknown budgets.
    terms: Terms | None = None

    @property
    def extended_name(self) -> str:
        return self.resource.extended_name


@dataclass(frozen=True, slots=True)
class LastGood:
    """The last budget computed from fresh readings, and when those readings were taken."""

    amount: int
    at: float


def clamp_amount(value: float, capacity: int) -> int:
    """floor(value) within [0, capacity]; anything not finite is 0 (fail towards online)."""
    if not math.isfinite(value) or capacity <= 0:
        return 0
    return max(0, min(capacity, math.floor(value)))


def from_terms(resource: Resource, capacity: int, terms: Terms) -> Budget:
    """The budget from fresh terms, with the formula written out in the reason."""
    unit = resource.unit
    raw = terms.raw
    if terms.bound is not None:
        raw = min(raw, terms.bound)
    amount = clamp_amount(raw, capacity)

    def f(v: float) -> str:
        return format_amount(v, unit)

    source = f" ({terms.capacity_why})" if terms.capacity_why else ""
    parts = [
        f"{resource.extended_name} {f(amount)} = capacity {f(terms.capacity)}{source}"
        f" x {terms.max_fraction:g}",
        f"system {f(terms.system)} ({terms.system_why})",
        f"online {f(terms.online)} ({terms.online_why})",
        f"margin {f(terms.margin)} ({terms.margin_why})",
    ]
    why = " - ".join(parts)
    if terms.bound is not None and terms.bound < terms.raw:
        why += f"; capped at {f(terms.bound)} by {terms.bound_why}"
    if not math.isfinite(raw) or amount != math.floor(raw):
        why += "; clamped to [0, capacity]"
    return Budget(resource, amount, capacity, False, why, terms)


def unknown(resource: Resource, capacity: int, what: str) -> Budget:
    """No budget can be computed (e.g. online use never read): offer nothing."""
    return Budget(
        resource, 0, capacity, True, f"{resource.extended_name} 0: {what}, so nothing is offered"
    )


def without_fresh_readings(
    resource: Resource,
    capacity: int,
    last: LastGood | None,
    now: float,
    settings: ReclaimSettings,
) -> Budget:
    """No fresh reading this time: hold the last fresh budget while it is within the
    staleness limit, then decay it linearly to 0 over `degrade_seconds` (degrade)."""
    name = resource.extended_name
    if last is None:
        return unknown(resource, capacity, f"no {resource} readings yet")
    age = max(0.0, now - last.at)
    unit = resource.unit
    if age <= settings.stale_after_seconds:
        amount = clamp_amount(last.amount, capacity)
        why = f"{name} {format_amount(amount, unit)}: held from {resource} readings {age:.0f}s old"
        return Budget(resource, amount, capacity, False, why)
    over = age - settings.stale_after_seconds
    left = 0.0 if settings.degrade_seconds <= 0 else max(0.0, 1.0 - over / settings.degrade_seconds)
    amount = clamp_amount(last.amount * left, capacity)
    zero_at = settings.stale_after_seconds + settings.degrade_seconds
    why = (
        f"{name} {format_amount(amount, unit)}: degraded, {resource} readings {age:.0f}s old "
        f"(limit {settings.stale_after_seconds:g}s), decaying from "
        f"{format_amount(last.amount, unit)} to 0 at {zero_at:g}s"
    )
    return Budget(resource, amount, capacity, True, why)


def is_stale(at: float | None, now: float, settings: ReclaimSettings) -> bool:
    return at is None or now - at > settings.stale_after_seconds
