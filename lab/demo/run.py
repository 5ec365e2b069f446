"""The demo from start to end: set up, five phases with a live line per second, clean up.

    set-up    the tree and its pods (`scenario`), every workload behind its gate
    alone     the latency probe runs on its own
    kubelet   the batch pods start: CPU hogs and a memory hog under kubelet's defaults
              (besteffort cpu.shares=2, nothing else)
    colocd    the real agent starts (`colocd run` as a child, `agent_child`) and enforces
    kubelet   the agent stops and writes back every value it changed: kubelet's defaults
    colocd    the agent starts again (on the history the first run left) and enforces
    clean-up  the agent stops and writes back every value it changed, the workloads stop,
              the tree is removed

kubelet's defaults and colocd take turns, so the drift of this machine's speed over a
minute weighs on both alike (run one after the other, the later one takes it alone). Each
phase lasts a fifth of the duration (colocd's starts at its first tick); its first
`SETTLE_S` seconds are shown but not counted in the summary, which pools each kind's
phases. SIGINT and SIGTERM only set a flag, checked at every step, so the clean-up always
runs, in that order, and a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab.demo.agent_child import AgentProcess
from lab.demo.scenario import NODE_MEMORY_BYTES, DemoNode
from lab.demo.timeline import Follower, PhaseResult, Second, phase_result
from lab.errors import DemoError
from lab.workloads.spin import iterations_per_ms

__all__ = ["PHASES", "DemoOutcome", "run_demo"]

PHASES = ("alone", "kubelet", "colocd", "kubelet", "colocd")
SETTLE_S = 2.0
LINE_EVERY_S = 1.0
AGENT_START_TIMEOUT_S = 30.0
WHY = {"alone": "colocd not running", "kubelet": "colocd not running: kubelet defaults"}
BANNERS = (
    "the online service alone",
    "batch starts (CPU hogs and a memory hog) under kubelet's defaults: besteffort"
    " cpu.shares=2, no colocd",
    "colocd starts (`colocd run`, default settings) and enforces",
    "colocd stops and writes back every value it changed: kubelet's defaults again",
    "colocd starts again, on the history its first run left, and enforces",
)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class DemoOutcome:
    t0: float = 0.0  # when the first phase began (monotonic)
    seconds: list[Second] = field(default_factory=list)
    phases: list[PhaseResult] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)  # what the clean-up did, one line each
    interrupted_by: int | None = None  # the signal that cut the demo short


class _Signals:
    """SIGINT/SIGTERM set a flag instead of raising wherever the program happens to be."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self.event = threading.Event()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: object) -> None:
            self.caught = self.caught or signum
            self.event.set()

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def check(self) -> None:
        if self.caught is not None:
            raise Interrupted(self.caught)

    def sleep(self, seconds: float) -> None:
        self.event.wait(max(0.0, seconds))
        self.check()


class _Demo:
    def __init__(
        self,
        workdir: Path,
        duration_s: float,
        live: Callable[[Second], None],
        say: Callable[[str], None],
        signals: _Signals,
    ) -> None:
        self.cpus = len(os.sched_getaffinity(0))
        self.duration_s = duration_s
        self.live = live
        self.say = say
        self.signals = signals
        self.node = DemoNode(workdir, iterations_per_ms(), self.cpus)
        self.workdir = workdir
        self.agent: AgentProcess | None = None
        self.outcome = DemoOutcome()
        self.windows: dict[str, list[tuple[float, float]]] = {}

    def run(self) -> None:
        tree = self.node.build()
        self.say(
            f"colocd demo: a node of {self.cpus} CPUs and {NODE_MEMORY_BYTES >> 20} MiB"
            f" (kubepods' limit), built beneath this process's own cgroups ({tree.root});"
            f" {len(PHASES)} phases of {self.duration_s / len(PHASES):.0f} s, kubelet's"
            " defaults and colocd taking turns"
        )
        self.signals.check()
        agent = AgentProcess(
            tree,
            self.workdir / "colocd",
            cpu_milli=self.cpus * 1000,
            memory_bytes=NODE_MEMORY_BYTES,
        )
        for pod in self.node.pods:
            agent.publish(pod)
        self.agent = agent
        follower: Follower | None = None
        for i, (phase, banner) in enumerate(zip(PHASES, BANNERS, strict=True)):
            self.say(f"phase {i + 1}/{len(PHASES)}: {banner}")
            if phase == "alone":
                self.node.start_online()
                self.outcome.t0 = time.monotonic()
                follower = Follower(self.node, self.outcome.t0)
            elif phase == "kubelet":
                self._stop_agent_between()
                if PHASES.index("kubelet") == i:
                    self.node.start_batch()
            else:
                agent.start()
                agent.wait_ticks(1, AGENT_START_TIMEOUT_S, lambda: self.signals.caught is not None)
            self.signals.check()
            assert follower is not None
            follower.agent = agent if phase == "colocd" else None
            self._phase(phase, follower)
        self.outcome.phases = self._results()

    def _phase(self, phase: str, follower: Follower) -> None:
        start = time.monotonic()
        end = start + self.duration_s / len(PHASES)
        self.windows.setdefault(phase, []).append((start + SETTLE_S, end))
        while (now := time.monotonic()) < end:
            self.signals.sleep(min(LINE_EVERY_S, end - now))
            second = follower.second(phase, time.monotonic(), WHY.get(phase, ""))
            self.outcome.seconds.append(second)
            self.live(second)

    def _results(self) -> list[PhaseResult]:
        """Stop the agent and the workloads (the probe writes its samples as it exits),
        then sum up each phase's window."""
        self._stop_agent()
        self.node.stop_workloads()
        assert self.node.probe is not None
        samples = self.node.probe.samples()
        return [
            phase_result(
                name,
                windows,
                self.node,
                [
                    (s.arrival_t, s.latency_us)
                    for s in samples
                    if any(a <= s.arrival_t <= b for a, b in windows)
                ],
                self.outcome.seconds,
            )
            for name, windows in self.windows.items()
        ]

    def _stop_agent_between(self) -> None:
        """Stop the agent, if it runs, before a kubelet phase: its writes must be gone."""
        agent = self.agent
        if agent is None or not agent.alive():
            return
        code = agent.stop()
        if code != 0:
            raise DemoError(f"stop colocd: it exited with status {code}: {agent.log_tail()}")

    def _stop_agent(self) -> None:
        agent = self.agent
        if agent is None or agent.pid is None or agent.popen is None:
            return
        if agent.popen.returncode is not None:  # stopped already
            return
        code = agent.stop()
        self.outcome.cleanup.append(
            "colocd stopped and wrote back every cgroup value it had changed"
            if code == 0
            else f"colocd exited with status {code}: {agent.log_tail()}"
        )

    def clean_up(self) -> None:
        self._stop_agent()
        count = len(self.node.workloads)
        self.node.close()
        self.outcome.cleanup.append(
            f"{count} workload processes stopped; the demo's cgroup tree was removed"
        )


def run_demo(
    duration_s: float, live: Callable[[Second], None], say: Callable[[str], None]
) -> DemoOutcome:
    """Run the whole demo: `live` gets a `Second` per line, `say` the banners. Everything
    is cleaned up whatever happens; DemoError says what could not be set up or run, and a
    SIGINT/SIGTERM ends it early (`interrupted_by`)."""
    if os.geteuid() != 0:
        raise DemoError("run demo: needs root (it builds cgroups and moves processes into them)")
    signals = _Signals()
    with signals.installed(), tempfile.TemporaryDirectory(prefix="colocd-demo-") as tmp:
        demo = _Demo(Path(tmp), duration_s, live, say, signals)
        try:
            demo.run()
        except Interrupted:
            pass
        finally:
            demo.clean_up()
        demo.outcome.interrupted_by = signals.caught
    return demo.outcome
