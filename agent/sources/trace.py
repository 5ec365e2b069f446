"""Reading `colocd simulate` traces: CSV with a header row, or JSON lines.

The columns are the fields of `qos.replay.TraceRow`; `t`, `cpu_capacity_milli`,
`online_cpu_milli` and `batch_cpu_demand_milli` are required. An empty CSV cell or a JSON
null is a missing reading. Every other value must be a finite, non-negative number, and
`t` must increase from row to row. The first bad cell stops the read with one line naming
the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent.errors import TraceError
from qos.replay import TraceRow

COLUMNS = TraceRow._fields
REQUIRED = ("t", "cpu_capacity_milli", "online_cpu_milli", "batch_cpu_demand_milli")


def _text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError(path, None, err.strerror or str(err)) from err


def _number(path: str, line: int, column: str, value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TraceError(path, line, f"column {column}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceError(path, line, f"column {column}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise TraceError(path, line, f"column {column}: {value!r} is not finite and >= 0")
    return number


def _records(path: str, text: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    """(line number, record) pairs, from JSON lines or from CSV (sniffed by the first
    non-blank character)."""
    if not text.strip():
        raise TraceError(path, None, "no rows")
    if text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TraceError(path, n, f"not JSON: {err.msg}") from None
            if not isinstance(record, dict):
                raise TraceError(path, n, "each line must be a JSON object")
            yield n, record
        return
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
    if missing:
        raise TraceError(path, 1, f"header lacks required columns {', '.join(missing)}")
    for record in reader:
        if None in record:
            raise TraceError(path, reader.line_num, "more cells than header columns")
        yield reader.line_num, record


def read_trace(path: str) -> list[TraceRow]:
    rows: list[TraceRow] = []
    for line, record in _records(path, _text(path)):
        unknown = sorted(set(record) - set(COLUMNS))
        if unknown:
            raise TraceError(
                path, line, f"unknown column {unknown[0]} (known: {', '.join(COLUMNS)})"
            )
        values = {c: _number(path, line, c, record.get(c)) for c in COLUMNS}
        if values["t"] is None:
            raise TraceError(path, line, "column t (seconds) is required in every row")
        if rows and values["t"] <= rows[-1].t:
            raise TraceError(path, line, f"t {values['t']:g} does not increase")
        if not rows:
            absent = [c for c in REQUIRED if values[c] is None]
            if absent:
                raise TraceError(path, line, f"first row lacks {', '.join(absent)}")
            if not values["cpu_capacity_milli"]:
                raise TraceError(path, line, "cpu_capacity_milli must be above 0")
        rows.append(TraceRow(**values))
    if not rows:
        raise TraceError(path, None, "no rows")
    return rows
