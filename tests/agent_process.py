"""`colocd ARGS` as a process of its own, its stderr on a pipe, for the tests that run the
agent as a daemon (`start_agent(["-v", "run", ...])`).

On the host it is a fresh interpreter (`python -m agent.cli`). Inside the VM of tests/vm a
fresh interpreter spends minutes importing the agent before it does anything: measured
there (Debian 6.1, TCG, 2 vCPUs), `import agent.cli` took 117-188 s, of which the
kubernetes client 71 s and pyroute2 28 s, a bare `python -c pass` 5.5 s: every module file
is opened over 9p (mounted sync, no cache) by an emulated CPU. That, not the agent, is why a
`colocd run` started there wrote no status within 150 s. So in the VM the test process,
which has imported the agent already, forks, and the child runs the same `agent.cli.main`
with the same arguments: its own PID, signal handlers, logging, status file and metrics
port; only the exec is skipped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import IO, Protocol

from agent.cli import main
from agent.commands.run import STOP_SIGNALS

__all__ = ["AgentProcess", "start_agent"]


class AgentProcess(Protocol):
    """What the tests use of a running agent (`subprocess.Popen` has it all)."""

    pid: int
    stderr: IO[str] | None

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Forked:
    """A child forked from this process running `agent.cli.main(argv)`."""

    def __init__(self, argv: list[str]) -> None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test
            code = 1
            try:
                os.close(read)
                os.dup2(write, 2)
                os.close(write)
                sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                for s in STOP_SIGNALS:
                    signal.signal(s, signal.SIG_DFL)
                root = logging.getLogger()
                for handler in root.handlers[:]:  # the test's capture: main sets its own
                    root.removeHandler(handler)
                code = main(argv)
            except BaseException:  # reported on the child's stderr
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(write)
        self.pid = pid
        self.stderr: IO[str] | None = open(read, encoding="utf-8", errors="replace")  # noqa: SIM115
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        return self._code

    def poll(self) -> int | None:
        if self._code is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._code = os.waitstatus_to_exitcode(status)
        return self._code

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"colocd (forked, pid {self.pid})", timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_agent(argv: list[str]) -> AgentProcess:
    """`colocd *argv` running, its stderr readable from `.stderr`."""
    if os.environ.get("COLOCD_IN_VM"):
        return Forked(argv)
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *argv], stderr=subprocess.PIPE, text=True
    )
