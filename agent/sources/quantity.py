"""Kubernetes quantities ("500m", "2Gi", "1e3") through the official client's parser."""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity as _parse


def parse_quantity(value: object) -> Decimal:
    """A quantity in base units; raises ValueError with a one-line message."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"quantity must be a string or number, got {type(value).__name__}")
    try:
        q = _parse(value)
    except (ValueError, ArithmeticError) as err:
        raise ValueError(f"invalid quantity {value!r}") from err
    if not q.is_finite():
        raise ValueError(f"invalid quantity {value!r}")
    return q
