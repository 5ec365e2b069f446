"""kubelet's CPU manager state: which CPUs kubelet has given away, read from its checkpoint.

    /var/lib/kubelet/cpu_manager_state
    {"policyName": "static", "defaultCpuSet": "0,5-7",
     "entries": {"<pod uid>": {"<container>": "1-2"}}, "checksum": 1234}

With the `static` policy kubelet owns the cpusets of Guaranteed containers with whole CPUs
(the entries) and keeps every other container on the shared pool (`defaultCpuSet`);
`none` gives nothing away. The file is re-read only when its size or mtime changes. A file
that is absent means no CPU manager state (None); one that cannot be parsed is reported
once per change and read as `static` with nothing known (colocd then writes no pod's
cpuset: failing towards kubelet, which owns them).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from isolation.knobs import parse_cpuset
from qos.cpus import KubeletCpus

__all__ = ["CPU_MANAGER_STATE", "CpuManagerState", "parse_cpu_manager_state"]

CPU_MANAGER_STATE = Path("/var/lib/kubelet/cpu_manager_state")

log = logging.getLogger(__name__)


def _cpus(text: Any, where: str) -> tuple[int, ...]:
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a CPU list string")
    try:
        return tuple(sorted(parse_cpuset(text)))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a CPU list") from None


def parse_cpu_manager_state(data: Any) -> KubeletCpus:
    """The checkpoint's JSON object as `KubeletCpus`; ValueError with a one-line reason."""
    if not isinstance(data, dict) or not isinstance(data.get("policyName"), str):
        raise ValueError("policyName: missing")
    entries = data.get("entries", {})
    entries = {} if entries is None else entries
    if not isinstance(entries, dict):
        raise ValueError("entries: expected a map of pod UIDs")
    pods: dict[str, tuple[int, ...]] = {}
    for uid, containers in entries.items():
        if not isinstance(containers, dict):
            raise ValueError(f"entries.{uid}: expected a map of containers")
        cpus: set[int] = set()
        for name, text in containers.items():
            cpus.update(_cpus(text, f"entries.{uid}.{name}"))
        pods[str(uid)] = tuple(sorted(cpus))
    shared = _cpus(data.get("defaultCpuSet", ""), "defaultCpuSet")
    return KubeletCpus(data["policyName"], shared, pods)


class CpuManagerState:
    """kubelet's checkpoint at `path`, re-read when it changes."""

    def __init__(self, path: Path = CPU_MANAGER_STATE) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._state: KubeletCpus | None = None

    def read(self) -> KubeletCpus | None:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._state = None, None
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return self._state
        self._stamp = stamp
        try:
            self._state = parse_cpu_manager_state(json.loads(self.path.read_text()))
        except (OSError, ValueError) as err:
            log.warning(
                "read kubelet CPU manager state %s: %s; writing no pod's cpuset", self.path, err
            )
            self._state = KubeletCpus("static")
        return self._state
