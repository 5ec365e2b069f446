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
import math
from collections.abc import Iterator, Mapping

from agent.errors import InputError, TraceError
from agent.inputs import parse_json, read_stdin, read_text
from qos.replay import TraceRow

COLUMNS = TraceRow._fields
REQUIRED = ("t", "cpu_capacity_milli", "online_cpu_milli", "batch_cpu_demand_milli")
# A day of one-second samples is about 10 MiB.
MAX_TRACE_BYTES = 64 * 2**20


def _text(path: str) -> str:
    """The trace's text; a named pipe is fine (`--trace <(generate)`), it is named on purpose."""
    try:
        if path == "-":
            return read_stdin(MAX_TRACE_BYTES)
        return read_text(path, MAX_TRACE_BYTES, allow_pipe=True)
    except InputError as err:
        raise TraceError(path, None, err.reason) from err


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
                record = parse_json(line)
            except InputError as err:
                raise TraceError(path, n, err.reason) from None
            if not isinstance(record, dict):
                raise TraceError(path, n, "each line must be a JSON object")
            yield n, record
        return
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise TraceError(path, 1, f"header lacks required columns {', '.join(missing)}")
        for record in reader:
            if None in record:
                raise TraceError(path, reader.line_num, "more cells than header columns")
            yield reader.line_num, record
    except csv.Error as err:  # e.g. a cell larger than csv's field limit
        raise TraceError(path, reader.line_num, f"not CSV: {err}") from None


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
