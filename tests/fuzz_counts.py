"""How many examples each fuzz test ran, for the summary at the end of a pytest run (the
hook is in tests/conftest.py): issue 11 asks for the number of examples run."""

from __future__ import annotations

from collections import Counter

EXAMPLES: Counter[str] = Counter()


def counted(target: str) -> None:
    """Count one example for `target` (call it first thing in the test body)."""
    EXAMPLES[target] += 1
