"""The crash-safe journal (isolation.journal): checksummed records, damage a crash can leave
(NUL blocks, a line cut short, a flipped byte) kept and reported, never dropped; compaction
as cgroups vanish (issue 11)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from isolation.errors import JournalError
from isolation.journal import FILENAME, MAX_BYTES, Journal

ROOT = "/sys/fs/cgroup"


def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path, ROOT, 1)


def written(tmp_path: Path, *keys: str) -> bytes:
    j = journal(tmp_path)
    for key in keys:
        j.record(key, "pids.max", (f"{key}\n",))
    return (tmp_path / FILENAME).read_bytes()


def test_records_survive_a_reload_and_only_the_first_original_counts(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.record("a/b", "pids.max", ("max\n",))
    j.record("a/b", "pids.max", ("7\n",))  # a later write never replaces the original
    again = journal(tmp_path)
    assert list(again) == [("a/b", "pids.max", ("max\n",))] and again.damaged == []


def test_a_nul_filled_head_keeps_every_intact_record_and_reports_the_nuls(
    tmp_path: Path,
) -> None:
    data = written(tmp_path, "a", "b")
    (tmp_path / FILENAME).write_bytes(b"\0" * 4096 + data)
    j = journal(tmp_path)
    assert [e.cgroup for e in j] == ["a", "b"]
    assert [(d.line, d.reason.split(" (")[0]) for d in j.damaged] == [(1, "4096 NUL bytes")]


def test_a_journal_of_nuls_only_is_reported_and_never_deleted(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"\0" * 8192)
    j = journal(tmp_path)
    assert len(j) == 0 and len(j.damaged) == 1
    j.forget([])  # what revert does with nothing restored: the file stays
    assert (tmp_path / FILENAME).read_bytes() == b"\0" * 8192


def test_a_torn_tail_is_reported_and_the_next_record_starts_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    data = written(tmp_path, "a")
    (tmp_path / FILENAME).write_bytes(data + data[:20])  # a crash while appending
    j = journal(tmp_path)
    assert [e.cgroup for e in j] == ["a"]
    assert "cut short while it was appended" in j.damaged[0].reason
    j.record("b", "pids.max", ("max\n",))
    again = journal(tmp_path)
    assert [e.cgroup for e in again] == ["a", "b"] and len(again.damaged) == 1


def test_a_flipped_byte_fails_its_checksum_and_only_that_record_is_lost(tmp_path: Path) -> None:
    data = bytearray(written(tmp_path, "a", "b", "c"))
    second = data.index(b"\n") + 1
    at = data.index(b'"b\\n"', second)
    data[at + 1] = ord("x")
    (tmp_path / FILENAME).write_bytes(bytes(data))
    j = journal(tmp_path)
    assert [e.cgroup for e in j] == ["a", "c"]
    assert [(d.line, d.reason) for d in j.damaged] == [
        (2, "checksum mismatch (damaged or cut short)")
    ]


def test_compaction_drops_vanished_cgroups_and_keeps_damaged_lines_verbatim(
    tmp_path: Path,
) -> None:
    data = written(tmp_path, "pod-1", "pod-2", "pod-3")
    junk = b"\xff\xfe not a record"
    (tmp_path / FILENAME).write_bytes(data + junk + b"\n")
    j = journal(tmp_path)
    assert j.drop_cgroups({"pod-1", "pod-3", "never-there"}) == 2
    again = journal(tmp_path)
    assert [e.cgroup for e in again] == ["pod-2"]
    assert [d.raw for d in again.damaged] == [junk]
    again.forget([("pod-2", "pids.max")])
    assert (tmp_path / FILENAME).read_bytes() == junk + b"\n"  # not deleted: unread


def test_an_emptied_undamaged_journal_is_removed(tmp_path: Path) -> None:
    written(tmp_path, "a")
    j = journal(tmp_path)
    j.drop_cgroups({"a"})
    assert not (tmp_path / FILENAME).exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_file_too_large_to_be_a_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    with open(tmp_path / FILENAME, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(JournalError, match="larger than 64 MiB: not a journal"):
        journal(tmp_path)


def test_a_record_with_a_good_checksum_but_wrong_shape_is_damage(tmp_path: Path) -> None:
    body = b'{"cgroup": "a", "knob": "pids.max", "texts": [1]}'
    (tmp_path / FILENAME).write_bytes(b"%08x %s\n" % (zlib.crc32(body), body))
    j = journal(tmp_path)
    assert len(j) == 0 and "malformed" in j.damaged[0].reason
