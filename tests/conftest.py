"""Suite-wide hooks: the fuzzing summary (examples run per target, tests/fuzz_counts.py)."""

from __future__ import annotations

import pytest

from tests.fuzz_counts import EXAMPLES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EXAMPLES:
        return
    terminalreporter.section("fuzzing: examples run")
    for target, n in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{n:7d}  {target}")
    terminalreporter.write_line(f"{sum(EXAMPLES.values()):7d}  in all")
