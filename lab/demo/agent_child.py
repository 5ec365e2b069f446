"""`colocd run` as a child process over a kubelet-like tree: the real agent, as the demo and
the benchmarks run it.

The tree's pods go into a manifest directory (`--pods`, re-read by the agent when it
changes), the tree's root is kubelet's `--kubelet-cgroup-root`, and the tree's root cgroup
is the node (`agent.node_cgroup`), so other work on the machine counts neither as the
node's use nor as system use. The node's capacity is given (`--node-cpu`, `--node-memory`),
the brain's settings are its defaults unless `settings` lays a config over them. The agent
logs one line per tick (-v) into `agent.log` in the work directory and writes its status
file in `state/`, which `status()` reads.

`stop()` sends SIGTERM once: the agent stops after its current step, writes back every
cgroup value it changed (`--revert-on-exit`) and exits 0; after `grace` seconds it is
killed. The child runs in its own session, so a Ctrl-C on the terminal reaches only the
caller, which then stops it in order (agent first, so it reverts while the tree exists).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.errors import StatusError
from agent.report.status import Status, read_status
from lab.errors import DemoError
from lab.kubelet_tree import KubeletTree
from qos.pod import Pod

__all__ = ["AgentProcess"]

STOP_GRACE_S = 15.0
POLL_S = 0.05
LOG_TAIL = 400


class AgentProcess:
    def __init__(
        self,
        tree: KubeletTree,
        workdir: Path,
        *,
        cpu_milli: int,
        memory_bytes: int,
        settings: Mapping[str, Any] | None = None,
        cgroup_procs: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`settings` is laid over the defaults like a --config file (sections qos,
        isolation, agent); `cgroup_procs` is a `cgroup.procs` file the child moves itself
        into before it runs (e.g. a cpu cgroup weighted like a node daemon's)."""
        self.tree = tree
        self.workdir = workdir
        self.pods_dir = workdir / "pods"
        self.state_dir = workdir / "state"
        self.log_path = workdir / "agent.log"
        self.cpu_milli = cpu_milli
        self.memory_bytes = memory_bytes
        self.settings = dict(settings or {})
        self.cgroup_procs = cgroup_procs
        self.extra_args = extra_args
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # unix time of the last start
        self.pods_dir.mkdir(parents=True, exist_ok=True)

    # --- pods ----------------------------------------------------------------------------

    def publish(self, pod: Pod) -> None:
        """Put the pod (as the tree returned it) in the agent's manifest directory."""
        self.tree.write_manifest(pod, self.pods_dir)

    # --- the process ---------------------------------------------------------------------

    def argv(self) -> list[str]:
        agent = {"node_cgroup": self.tree.root, **self.settings.get("agent", {})}
        config = {**self.settings, "agent": agent}
        config_path = self.workdir / "colocd.json"
        config_path.write_text(json.dumps(config))
        argv = [sys.executable, "-m", "agent.cli", "-v", "run", "--pods", str(self.pods_dir)]
        argv += ["--kubelet-cgroup-root", self.tree.root, "--config", str(config_path)]
        argv += ["--state-dir", str(self.state_dir), "--revert-on-exit"]
        argv += ["--node-cpu", f"{self.cpu_milli}m", "--node-memory", str(self.memory_bytes)]
        return argv + list(self.extra_args)

    def start(self) -> None:
        """Start the agent, again if it has stopped (on the state it left)."""
        if self.alive():
            return
        self.started_at = time.time()
        procs = self.cgroup_procs

        def enter() -> None:
            if procs is not None:
                with open(procs, "w") as f:
                    f.write("0")

        with self.log_path.open("ab") as log:
            try:
                self.popen = subprocess.Popen(
                    self.argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=enter if procs is not None else None,  # noqa: PLW1509
                )
            except OSError as err:
                raise DemoError(f"start colocd run: {err.strerror}") from err

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def status(self) -> Status | None:
        """The agent's last status since it last started; None until it has written one."""
        try:
            status = read_status(self.state_dir)
        except StatusError:
            return None
        return status if status.written_at >= self.started_at else None

    def log_tail(self, limit: int = LOG_TAIL) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return text[-limit:].replace("\n", " | ")

    def wait_ticks(
        self,
        ticks: int,
        timeout: float,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> Status | None:
        """Wait until the agent's status shows `ticks` ticks; None when `interrupted()`
        says to give up. A dead agent or a timeout raises DemoError (with its log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if interrupted():
                return None
            status = self.status()
            if status is not None and status.ticks >= ticks:
                return status
            if not self.alive():
                code = None if self.popen is None else self.popen.returncode
                raise DemoError(f"run colocd: it exited with status {code}: {self.log_tail()}")
            time.sleep(POLL_S)
        raise DemoError(f"run colocd: no tick {ticks} within {timeout:g} s: {self.log_tail()}")

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM once (the agent reverts its writes), SIGKILL after `grace`; the exit
        status (None: never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.stop()
