"""The units the brain computes in, and how amounts read in the one-line reasons."""

from __future__ import annotations

from enum import StrEnum


class Unit(StrEnum):
    MILLICORES = "m"
    BYTES = "B"
    HUNDREDTHS = "%gpu"


GIB = 1024**3
MIB = 1024**2


def format_amount(value: float, unit: Unit) -> str:
    """'2500m', '3.25Gi', '512Mi', '150 (1.50 GPU)': short, exact enough to check by hand."""
    if unit is Unit.MILLICORES:
        return f"{value:.0f}m"
    if unit is Unit.BYTES:
        if abs(value) >= GIB:
            return f"{value / GIB:.2f}Gi"
        return f"{value / MIB:.0f}Mi"
    return f"{value:.0f} ({value / 100:.2f} GPU)"


def format_fraction(value: float) -> str:
    return f"{value * 100:.1f}%"
