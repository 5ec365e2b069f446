"""Eviction on a bare host (`--pods DIR`: no API server, so no Eviction API): the batch pod's
processes are stopped through its cgroup, the way kubelet stops a pod.

    SIGTERM to every process in the pod's cgroup subtree (the pod and its containers);
    after `grace_s`, SIGKILL to what is left: v2's `cgroup.kill` (at once, nothing forks
    away), v1 each PID, read again until none is left.

Only PIDs read from the pod's own cgroup subtree are signalled, never a process elsewhere.
The outcome is logged and counted like an API eviction (`agent.act.evictor.record`,
`colocd_eviction_requests_total{result}`): evicted, dry_run (a dry-run eviction reads the
PIDs and signals none), backoff (the pod is already stopping), gone (no cgroup or no process
left), failed (the kernel refused a signal). The SIGKILL waits on a timer, so the tick loop
never blocks for the grace period; `close()` delivers the pending ones at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from agent.act.evictor import (
    EvictionOutcome,
    EvictionRequest,
    EvictionResult,
    count_from_zero,
    record,
)
from agent.report.metrics import KubeMetrics
from isolation.cgroups import Cgroups
from isolation.discovery import discover_pod
from isolation.errors import CgroupGoneError, IsolationError
from isolation.layout import KubeletLayout
from isolation.procs import alive, kill_subtree, pids_below
from qos.plan import Eviction
from qos.pod import Pod

__all__ = ["CgroupEvictor"]

log = logging.getLogger(__name__)

# v1 SIGKILL: read the subtree again after each round (a process may fork meanwhile).
KILL_ROUNDS = 20
KILL_ROUND_S = 0.05


class CgroupEvictor:
    def __init__(
        self,
        cgroups: Cgroups,
        layout: KubeletLayout,
        metrics: KubeMetrics,
        *,
        grace_s: float = 30.0,
    ) -> None:
        self._cgroups = cgroups
        self._layout = layout
        self._metrics = metrics
        self._grace_s = grace_s
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[threading.Timer, str]] = {}  # pod key -> SIGKILL
        count_from_zero(metrics)

    def evict(self, eviction: Eviction, pod: Pod | None) -> EvictionOutcome:
        if pod is None:
            namespace, _, name = eviction.pod.partition("/")
            request = EvictionRequest(namespace, name, eviction.uid, eviction.reason)
            return self._done(request, EvictionResult.GONE, "pod no longer in the pod source")
        request = EvictionRequest.for_pod(pod, eviction.reason)
        with self._lock:
            if request.key in self._pending:
                return self._done(request, EvictionResult.BACKOFF, "already stopping")
        try:
            cgroup = discover_pod(pod, self._cgroups, self._layout).cgroup
            pids = set() if cgroup is None else pids_below(self._cgroups, cgroup)
        except (IsolationError, OSError) as err:
            return self._done(request, EvictionResult.FAILED, str(err))
        if cgroup is None or not pids:
            return self._done(request, EvictionResult.GONE, "no process left in its cgroup")
        plan = f"SIGTERM to {len(pids)} processes of /{cgroup}, SIGKILL after {self._grace_s:g}s"
        if eviction.dry_run:
            why = f"would send {plan}: {request.reason}"
            return self._done(request, EvictionResult.DRY_RUN, why)
        refused = _signal(pids, signal.SIGTERM)
        if refused:
            # Not ours to stop (another user's, without CAP_KILL): nothing more is tried.
            return self._done(request, EvictionResult.FAILED, f"SIGTERM refused: {refused}")
        timer = threading.Timer(self._grace_s, self._kill, (request.key,))
        timer.daemon = True
        with self._lock:
            self._pending[request.key] = (timer, cgroup)
        timer.start()
        return self._done(request, EvictionResult.EVICTED, f"sent {plan}: {request.reason}")

    def close(self) -> None:
        """Deliver the pending SIGKILLs now: the evictions were decided, the agent stops."""
        with self._lock:
            keys = list(self._pending)
        for key in keys:
            self._kill(key)

    def _kill(self, key: str) -> None:
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None:
            return
        timer, cgroup = pending
        timer.cancel()
        try:
            if kill_subtree(self._cgroups, cgroup):
                log.info("evict pod %s: cgroup.kill of /%s", key, cgroup)
                return
            for _ in range(KILL_ROUNDS):
                left = {p for p in pids_below(self._cgroups, cgroup) if alive(p)}
                if not left:
                    return
                log.info("evict pod %s: SIGKILL to %d processes of /%s", key, len(left), cgroup)
                refused = _signal(left, signal.SIGKILL)
                if refused:
                    log.warning("evict pod %s: SIGKILL refused: %s", key, refused)
                    return
                time.sleep(KILL_ROUND_S)
            log.warning("evict pod %s: processes still in /%s after SIGKILL", key, cgroup)
        except CgroupGoneError:
            return  # the pod's cgroup went with its processes
        except (IsolationError, OSError) as err:  # a timer thread: say it, never raise
            log.warning("evict pod %s: SIGKILL: %s", key, err)

    def _done(
        self, request: EvictionRequest, result: EvictionResult, message: str
    ) -> EvictionOutcome:
        return record(self._metrics, EvictionOutcome(request, result, message))


def _signal(pids: set[int] | frozenset[int], signum: signal.Signals) -> str:
    """Send `signum` to each PID; a PID gone meanwhile is fine. The refusals, in words."""
    refused = []
    for pid in sorted(pids):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        except PermissionError as err:
            refused.append(f"pid {pid}: {err.strerror}")
    return "; ".join(refused)
