"""Kubernetes quantities ("500m", "2Gi", "1e3") through the official client's parser, in
ASCII only and bounded by what a node can have."""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity as _parse

from qos.pod import BATCH_CPU, BATCH_GPU, BATCH_MEMORY, CPU, MEMORY
from qos.units import MAX_NODE_CPUS, MAX_NODE_MEMORY_BYTES

__all__ = ["MAX_QUANTITY", "check_bound", "parse_quantity"]

MAX_CPU = Decimal(MAX_NODE_CPUS)  # cores
MAX_MEMORY = Decimal(MAX_NODE_MEMORY_BYTES)
MAX_QUANTITY = Decimal(2**63 - 1)  # any other resource: what an int64 holds
_MAX = {
    CPU: MAX_CPU,
    MEMORY: MAX_MEMORY,
    BATCH_CPU: MAX_CPU * 1000,  # millicores
    BATCH_MEMORY: MAX_MEMORY,
    BATCH_GPU: MAX_CPU * 100,  # hundredths of a GPU
}


def parse_quantity(value: object, resource: str | None = None) -> Decimal:
    """A quantity in base units; raises ValueError with a one-line message. With
    `resource` ("cpu", "memory", ...) it is also held to that resource's bound."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"quantity must be a string or number, got {type(value).__name__}")
    if isinstance(value, str) and not value.isascii():
        # Decimal reads full-width and Arabic-Indic digits; Kubernetes does not.
        raise ValueError(f"invalid quantity {value!r}: not ASCII")
    try:
        q = _parse(value)
    except (ValueError, ArithmeticError) as err:
        raise ValueError(f"invalid quantity {value!r}") from err
    if not q.is_finite():
        raise ValueError(f"invalid quantity {value!r}")
    return check_bound(resource, q, value)


def check_bound(resource: str | None, q: Decimal, shown: object = None) -> Decimal:
    """`q` when within what a node can have of `resource` (None: any resource)."""
    limit = _MAX.get(resource or "", MAX_QUANTITY)
    if abs(q) > limit:
        what = f"{resource} quantity" if resource else "quantity"
        text = repr(shown) if shown is not None else f"{q:f}"
        raise ValueError(f"{what} {text} is more than a node can have (at most {limit:f})")
    return q
