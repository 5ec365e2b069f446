"""Durations ("500ms", "30s", "5m", "1h30m") and bit rates ("200Mbit", "1Gbit") as people write
them in policies. Quantities ("500m", "2Gi") go through `agent.sources.quantity.parse_quantity`.

Both parsers return base units (seconds as float, bits per second as int) and raise ValueError
with a one-line message that shows an example of what is accepted.
"""

from __future__ import annotations

import re
from decimal import Decimal

_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)", re.ASCII)  # ASCII digits only
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h))+$"

# tc's spelling (tc-bitrate(8)): SI prefixes are powers of 1000, IEC ones powers of 1024.
_BIT_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "kibit": 2**10,
    "mibit": 2**20,
    "gibit": 2**30,
    "tibit": 2**40,
}
_BITRATE = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+)$", re.IGNORECASE | re.ASCII)
BITRATE_PATTERN = r"^[0-9]+(\.[0-9]+)?([kKmMgGtT][iI]?)?[bB][iI][tT]$"


def parse_duration(value: object) -> float:
    """Seconds in `value` ("1h30m" → 5400.0); a bare number is refused (which unit?)."""
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string such as '30s' or '5m', got {value!r}")
    text = value.strip()
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(
            f"invalid duration {value!r} (expected e.g. '500ms', '30s', '5m', '1h30m')"
        )
    total = sum(Decimal(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    return float(total)


def format_duration(seconds: float) -> str:
    """The shortest spelling `parse_duration` reads back ("5m", "1h30m", "250ms")."""
    if seconds < 0:
        raise ValueError(f"negative duration {seconds}")
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    rest, parts = millis // 1000, []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def parse_bitrate(value: object) -> int:
    """Bits per second in `value` ("200Mbit" → 200_000_000), tc's units, no bare numbers."""
    if not isinstance(value, str):
        raise ValueError(f"bit rate must be a string such as '200Mbit', got {value!r}")
    match = _BITRATE.match(value.strip())
    if match is None:
        raise ValueError(
            f"invalid bit rate {value!r} (expected e.g. '500kbit', '200Mbit', '1Gbit')"
        )
    number, unit = match.groups()
    if unit.lower().endswith("bps"):
        raise ValueError(
            f"ambiguous bit rate {value!r}: tc reads '{unit}' as bytes per second; "
            "write bits, e.g. '200Mbit'"
        )
    scale = _BIT_UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(
            f"invalid bit rate {value!r}: unknown unit {unit!r} (use bit, kbit, Mbit, Gbit)"
        )
    return int(Decimal(number) * scale)
