"""The on-disk journal of original values, so every change colocd made can be reverted.

One JSON object per line in `<state dir>/cgroup-journal.jsonl`. The first line says which
hierarchy the entries belong to; each later line records, for one (cgroup, knob), the raw
text of each of the knob's files as it was before colocd first wrote it. Only the first
record per (cgroup, knob) counts: later writes never overwrite the original. A record is
appended and fsync'd before the write it protects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from isolation.errors import JournalError

__all__ = ["FILENAME", "Entry", "Journal"]

FILENAME = "cgroup-journal.jsonl"
FORMAT = 1


class Entry(NamedTuple):
    cgroup: str
    knob: str
    texts: tuple[str, ...]


class Journal:
    def __init__(self, state_dir: str | os.PathLike[str], cgroup_root: str, version: int) -> None:
        self.path = Path(state_dir) / FILENAME
        self._header = {"journal": FORMAT, "cgroupRoot": str(cgroup_root), "version": version}
        self._entries: dict[tuple[str, str], Entry] = {}
        try:
            Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise JournalError(str(state_dir), f"cannot create: {err.strerror}") from err
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except OSError as err:
            raise JournalError(str(self.path), f"cannot read: {err.strerror}") from err
        except UnicodeDecodeError as err:  # never written by colocd: leave it for a human
            raise JournalError(str(self.path), f"not UTF-8 text (byte {err.start})") from err
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: too deep
                if number == len(lines):
                    continue  # a record cut short by a crash: its write never happened
                raise JournalError(str(self.path), f"line {number}: not JSON") from err
            if number == 1:
                self._check_header(obj)
                continue
            try:
                entry = Entry(str(obj["cgroup"]), str(obj["knob"]), tuple(map(str, obj["texts"])))
            except (KeyError, TypeError) as err:
                raise JournalError(str(self.path), f"line {number}: malformed entry") from err
            self._entries.setdefault((entry.cgroup, entry.knob), entry)

    def _check_header(self, obj: object) -> None:
        if not isinstance(obj, dict) or obj.get("journal") != FORMAT:
            raise JournalError(str(self.path), "first line is not a colocd journal header")
        mine = (self._header["cgroupRoot"], self._header["version"])
        theirs = (obj.get("cgroupRoot"), obj.get("version"))
        if mine != theirs:
            raise JournalError(
                str(self.path),
                f"written for cgroup v{theirs[1]} at {theirs[0]}, "
                f"this host is cgroup v{mine[1]} at {mine[0]}",
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def get(self, cgroup: str, knob: str) -> Entry | None:
        return self._entries.get((cgroup, knob))

    def record(self, cgroup: str, knob: str, texts: tuple[str, ...]) -> None:
        """Remember the original texts, durably, unless already known."""
        if (cgroup, knob) in self._entries:
            return
        entry = Entry(cgroup, knob, texts)
        lines = []
        if not self.path.exists() or self.path.stat().st_size == 0:
            lines.append(json.dumps(self._header))
        lines.append(json.dumps({"cgroup": cgroup, "knob": knob, "texts": list(texts)}))
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise JournalError(str(self.path), f"cannot append: {err.strerror}") from err
        self._entries[(cgroup, knob)] = entry

    def forget(self, keys: list[tuple[str, str]]) -> None:
        """Drop reverted entries and rewrite the file atomically (removed when empty)."""
        for key in keys:
            self._entries.pop(key, None)
        try:
            if not self._entries:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_suffix(".tmp")
            lines = [json.dumps(self._header)] + [
                json.dumps({"cgroup": e.cgroup, "knob": e.knob, "texts": list(e.texts)})
                for e in self._entries.values()
            ]
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            raise JournalError(str(self.path), f"cannot rewrite: {err.strerror}") from err
