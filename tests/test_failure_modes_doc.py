"""docs/failure-modes.md: every row names a test, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "failure-modes.md"
TEST = re.compile(r"`([\w/]+\.py)(?:::(\w+))?`")


def rows() -> list[str]:
    lines = DOC.read_text().splitlines()
    table = [line for line in lines if line.startswith("| ") and not line.startswith("|---")]
    headers = {line for line in table if line.rstrip().endswith("| test |")}
    return [line for line in table if line not in headers]


def test_every_row_names_a_test() -> None:
    assert len(rows()) >= 20
    for row in rows():
        assert TEST.search(row.rsplit("|", 2)[-2]), row


def test_every_named_test_exists() -> None:
    for row in rows():
        for path, name in TEST.findall(row.rsplit("|", 2)[-2]):
            source = (ROOT / "tests" / path).read_text()
            assert not name or f"def {name}(" in source, f"{path}::{name}"
