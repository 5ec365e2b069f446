"""The on-disk journal of original values, so every change colocd made can be reverted.

`<state dir>/cgroup-journal.jsonl` holds one record per line: the CRC-32 of the JSON text
(8 hex digits), a space, then the JSON object. Each record names the hierarchy it belongs
to (cgroup root and version) and, for one (cgroup, knob), the raw text of each of the
knob's files as it was before colocd first wrote it. Only the first record per (cgroup,
knob) counts: later writes never overwrite the original. A record is appended and fsync'd
before the write it protects, so a record cut short by a crash protected nothing yet.

A crash (or a power loss) can leave the file damaged: NUL bytes where blocks were never
written, a line cut short, a line whose checksum does not match. Loading keeps every intact
record and lists everything else in `damaged`, with its line number and why. What could
not be read is never dropped: compaction (an atomic rewrite: temporary file, fsync,
rename, fsync of the directory) writes the damaged lines back verbatim, after the intact
records, and the file is removed only when nothing at all is left in it. Records of
cgroups that no longer exist are dropped as they vanish (`drop_cgroups`), so the journal
does not grow as pods come and go.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from isolation.errors import JournalError

__all__ = ["FILENAME", "MAX_BYTES", "Damage", "Entry", "Journal"]

FILENAME = "cgroup-journal.jsonl"
# A journal holds a few records per pod; anything this large is not one colocd wrote.
MAX_BYTES = 64 << 20


class Entry(NamedTuple):
    cgroup: str
    knob: str
    texts: tuple[str, ...]


class Damage(NamedTuple):
    """A line that is not an intact record: kept verbatim, reported by `colocd revert`."""

    line: int
    raw: bytes
    reason: str


def _encode(entry: Entry, root: str, version: int) -> bytes:
    body = json.dumps(
        {
            "cgroup": entry.cgroup,
            "knob": entry.knob,
            "texts": list(entry.texts),
            "cgroupRoot": root,
            "version": version,
        },
        separators=(",", ":"),
    ).encode()
    return b"%08x %s" % (zlib.crc32(body), body)


def _decode(line: bytes) -> tuple[Entry, str, int] | str:
    """(entry, root, version) of an intact record, or why the line is not one."""
    crc, sep, body = line.partition(b" ")
    if not sep or len(crc) != 8:
        return "not a journal record"
    try:
        if int(crc, 16) != zlib.crc32(body):
            return "checksum mismatch (damaged or cut short)"
        obj = json.loads(body)
        entry = Entry(str(obj["cgroup"]), str(obj["knob"]), tuple(obj["texts"]))
        root, version = obj["cgroupRoot"], obj["version"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return "checksum matches but the record is malformed"
    if not all(isinstance(t, str) for t in entry.texts):
        return "checksum matches but the record is malformed"
    return entry, str(root), version


class Journal:
    def __init__(self, state_dir: str | os.PathLike[str], cgroup_root: str, version: int) -> None:
        self.path = Path(state_dir) / FILENAME
        self.root = str(cgroup_root)
        self.version = version
        self._entries: dict[tuple[str, str], Entry] = {}
        self.damaged: list[Damage] = []
        self._ends_with_newline = True
        try:
            Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise JournalError(str(state_dir), f"cannot create: {err.strerror}") from err
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as err:
            raise JournalError(str(self.path), f"cannot read: {err.strerror}") from err
        if len(data) > MAX_BYTES:
            raise JournalError(str(self.path), f"larger than {MAX_BYTES >> 20} MiB: not a journal")
        self._ends_with_newline = not data or data.endswith(b"\n")
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw:
                continue
            body = raw.strip(b"\0")
            if len(body) < len(raw):
                nuls = len(raw) - len(body)
                why = f"{nuls} NUL bytes (blocks a crash left unwritten; content lost)"
                self.damaged.append(Damage(number, b"\0" * nuls, why))
            if not body:
                continue
            decoded = _decode(body)
            if isinstance(decoded, str):
                if number == len(lines) and not self._ends_with_newline:
                    decoded += "; the last line, cut short while it was appended"
                self.damaged.append(Damage(number, body, decoded))
                continue
            entry, root, version = decoded
            if (root, version) != (self.root, self.version):
                raise JournalError(
                    str(self.path),
                    f"line {number}: written for cgroup v{version} at {root}, "
                    f"this host is cgroup v{self.version} at {self.root}",
                )
            self._entries.setdefault((entry.cgroup, entry.knob), entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def get(self, cgroup: str, knob: str) -> Entry | None:
        return self._entries.get((cgroup, knob))

    def cgroups(self) -> set[str]:
        return {cgroup for cgroup, _ in self._entries}

    def record(self, cgroup: str, knob: str, texts: tuple[str, ...]) -> None:
        """Remember the original texts, durably, unless already known."""
        if (cgroup, knob) in self._entries:
            return
        entry = Entry(cgroup, knob, texts)
        # After a line cut short, start on a line of its own so the damage stays separate.
        data = (b"" if self._ends_with_newline else b"\n") + _encode(entry, self.root, self.version)
        try:
            with open(self.path, "ab") as f:
                f.write(data + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            # Part of the line may have reached the file (ENOSPC): start the next one afresh.
            self._ends_with_newline = False
            raise JournalError(str(self.path), f"cannot append: {err.strerror}") from err
        self._ends_with_newline = True
        self._entries[(cgroup, knob)] = entry

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop these entries (reverted, or their cgroup is gone) and compact the file."""
        dropped = [k for k in keys if self._entries.pop(k, None) is not None]
        if dropped or (not self._entries and not self.damaged):
            self._rewrite()

    def drop_cgroups(self, gone: Iterable[str]) -> int:
        """Forget every entry of cgroups that no longer exist; how many were dropped."""
        gone = set(gone)
        keys = [k for k in self._entries if k[0] in gone]
        if keys:
            self.forget(keys)
        return len(keys)

    def _rewrite(self) -> None:
        """Atomically replace the file with the intact entries and the damaged lines as
        they were; removed only when neither is left."""
        try:
            if not self._entries and not self.damaged:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_name(f".{FILENAME}.{os.getpid()}.tmp")
            lines = [_encode(e, self.root, self.version) for e in self._entries.values()]
            lines += [d.raw for d in self.damaged]
            with open(tmp, "wb") as f:
                f.write(b"\n".join(lines) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise JournalError(str(self.path), f"cannot rewrite: {err.strerror}") from err
        self._ends_with_newline = True
