"""The units the brain computes in, and how amounts read in the one-line reasons."""

from __future__ import annotations

from enum import StrEnum


class Unit(StrEnum):
    MILLICORES = "m"
    BYTES = "B"
    HUNDREDTHS = "%gpu"


GIB = 1024**3
MIB = 1024**2

# The most one node can have, with room to spare: Linux runs at most 8192 CPUs (NR_CPUS)
# and x86-64 addresses at most 4 PiB (52 bits). Inputs beyond these ("1e30" CPUs,
# "99999999999Ei") are typos or attacks, and would overflow the int64s cgroup files hold.
MAX_NODE_CPUS = 2**16
MAX_NODE_MEMORY_BYTES = 2**56


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
