"""The running agent imports nothing from the lab (the demo, workloads, kubelet-like tree)."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(statement: str) -> list[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def test_run_command_imports_no_lab_module() -> None:
    loaded = _modules_after("import agent.cli, agent.commands.run")
    assert "agent.commands.run" in loaded
    assert [m for m in loaded if m == "lab" or m.startswith("lab.")] == []


def test_the_demo_command_loads_the_lab_only_when_it_runs() -> None:
    loaded = _modules_after("import agent.commands.demo; import lab.demo.run")
    assert "lab.demo.run" in loaded  # the check above can see lab modules when they are there


def test_demo_phase_count_matches_the_lab() -> None:
    from agent.commands.demo import PHASE_COUNT
    from lab.demo.run import PHASES

    assert len(PHASES) == PHASE_COUNT
