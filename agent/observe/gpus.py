"""GPUs as a source of readings: NVML (`isolation.gpu`) per device, each process on a GPU
mapped to its pod and container, and the mapping checked against what the container was
given.

    NVML survey ─► processes ─► /proc/<pid>/cgroup ─► the pod whose cgroup holds it
                                                      (Topology) and its container
                             ─► NVIDIA_VISIBLE_DEVICES, device cgroup / /dev ─► mismatches
                ─► per GPU: online (everything not batch) and batch SM % and memory

No NVML, or no GPU: `GpuSource.open` returns None and the GPU is absent everywhere (never 0).
An NVML failure on one GPU (lost, reset required, not supported) makes that device's reading
an error; the others are read and the tick goes on.

Attribution fails towards online: a process no pod claims counts as online (protected);
where a process's share of SM time is not reported, online is the device's utilisation
less what batch is known to use, and, when that is unknown too, the whole device's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

from agent.observe.topology import PodPlace, Topology
from isolation._gpu_errors import GpuError
from isolation.cgroups import Cgroups
from isolation.gpu import GpuDevice, GpuMonitor, NvmlApi
from isolation.layout import Runtime
from isolation.proc_info import cgroup_of, device_cgroup_allows, device_node_visible, env_of
from qos.samples import GpuDeviceReading, GpuReading
from qos.tiers import Tier

__all__ = ["GpuObservation", "GpuSource", "GpuUser", "Mismatch"]

log = logging.getLogger(__name__)

VISIBLE = "NVIDIA_VISIBLE_DEVICES"


class GpuUser(NamedTuple):
    """One process on one GPU, with the pod and container it belongs to (None: no pod)."""

    gpu: int
    uuid: str | None
    pid: int
    kind: str
    pod: str | None
    container: str | None
    tier: Tier | None
    memory_bytes: int | None
    sm_percent: int | None

    def where(self) -> str:
        if self.pod is None:
            return f"pid {self.pid} (no pod)"
        return f"pid {self.pid} of {self.pod}/{self.container or '?'} ({self.tier})"


class Mismatch(NamedTuple):
    """A process on a GPU its container was not given, by which check."""

    user: GpuUser
    check: str  # agent.report.metrics.MAPPING_CHECKS: visible_devices, device_cgroup, device_node
    detail: str

    @property
    def line(self) -> str:
        return f"GPU {self.user.gpu}: {self.user.where()} uses it, but {self.detail}"


class GpuObservation(NamedTuple):
    reading: GpuReading
    devices: tuple[GpuDevice, ...]
    users: tuple[GpuUser, ...]
    mismatches: tuple[Mismatch, ...]

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(d.error for d in self.devices if d.error is not None)


def _visible(value: str, index: int, uuid: str | None) -> bool:
    """Whether an NVIDIA_VISIBLE_DEVICES value names this GPU ("all", indices, UUIDs)."""
    items = {v.strip() for v in value.split(",") if v.strip()}
    if "all" in items:
        return True
    return str(index) in items or (uuid is not None and uuid in items)


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(v or 0 for v in values))


@dataclass(slots=True)
class GpuSource:
    monitor: GpuMonitor
    cgroups: Cgroups
    proc_root: str = "/proc"

    @classmethod
    def open(
        cls, cgroups: Cgroups, nvml: NvmlApi | None = None, proc_root: str = "/proc"
    ) -> GpuSource | None:
        """A source over NVML (the real pynvml unless `nvml` is given); None without NVML
        or without GPUs, saying why in the log."""
        try:
            monitor = GpuMonitor(nvml)
        except GpuError as err:
            log.warning("GPUs not read: %s", err)
            return None
        state = monitor.state
        if not state.available or state.device_count == 0:
            log.info("no GPU: %s", state.reason or "NVML sees no device")
            monitor.close()
            return None
        log.info("GPUs: %d (driver %s)", state.device_count, state.driver_version)
        return cls(monitor, cgroups, proc_root)

    def close(self) -> None:
        self.monitor.close()

    # --- one tick ----------------------------------------------------------------------

    def observe(self, topo: Topology, at: float) -> GpuObservation:
        devices = self.monitor.survey()
        owner = _Owners(topo, self.cgroups, self.proc_root)
        users = tuple(
            GpuUser(
                p.gpu_index,
                p.gpu_uuid,
                p.pid,
                p.kind,
                *owner(p.pid),
                p.memory_used_bytes,
                p.sm_percent,
            )
            for d in devices
            for p in d.processes
        )
        minors = {d.index: d.minor for d in devices}
        mismatches = tuple(m for u in users for m in self._check(u, minors.get(u.gpu)))
        per_device = tuple(self._device(d, at, users) for d in devices)
        return GpuObservation(_node(at, per_device), devices, users, mismatches)

    def _check(self, u: GpuUser, minor: int | None) -> list[Mismatch]:
        if u.pod is None:
            return []  # a host process: nothing was handed to it
        out = []
        visible = env_of(u.pid, VISIBLE, self.proc_root)
        if visible is not None and not _visible(visible, u.gpu, u.uuid):
            out.append(Mismatch(u, "visible_devices", f"its {VISIBLE} is {visible!r}"))
        if minor is not None:
            hierarchy = self.cgroups.hierarchy
            if device_cgroup_allows(u.pid, hierarchy, minor, self.proc_root) is False:
                out.append(
                    Mismatch(u, "device_cgroup", f"its devices.list denies /dev/nvidia{minor}")
                )
            if device_node_visible(u.pid, minor, self.proc_root) is False:
                out.append(Mismatch(u, "device_node", f"its /dev has no nvidia{minor}"))
        return out

    @staticmethod
    def _device(d: GpuDevice, at: float, users: tuple[GpuUser, ...]) -> GpuDeviceReading:
        if d.reading is None:
            return GpuDeviceReading(at, d.index, error=d.error)
        r = d.reading
        mine = [u for u in users if u.gpu == d.index]
        batch = [u for u in mine if u.tier is Tier.BATCH]
        rest = [u for u in mine if u.tier is not Tier.BATCH]
        sm = None if r.sm_percent is None else float(r.sm_percent)
        batch_sm = _sum([u.sm_percent for u in batch])
        rest_sm = _sum([u.sm_percent for u in rest])
        if not batch:
            online = sm
        elif sm is not None and batch_sm is not None:
            online = max(0.0, sm - batch_sm)
        elif rest_sm is not None:
            online = rest_sm
        else:
            online = sm  # unknown split: all of it protected
        if batch_sm is None and sm is not None and online is not None and batch:
            batch_sm = max(0.0, sm - online)
        used = r.memory_used_bytes
        batch_mem = _sum([u.memory_bytes for u in batch])
        rest_mem = _sum([u.memory_bytes for u in rest])
        if used is not None and batch_mem is not None:
            online_mem = max(0.0, used - batch_mem)
        else:
            online_mem = rest_mem if rest_mem is not None and rest else used
        pods: dict[str, float | None] = {}
        for u in batch:
            assert u.pod is not None
            old = pods.get(u.pod, 0.0)
            pods[u.pod] = None if old is None or u.memory_bytes is None else old + u.memory_bytes
        return GpuDeviceReading(
            at,
            d.index,
            uuid=r.uuid,
            online_percent=online,
            batch_percent=batch_sm if batch else 0.0,
            online_memory_bytes=online_mem,
            batch_memory_bytes=batch_mem if batch else 0.0,
            memory_total_bytes=r.memory_total_bytes,
            batch_pods=tuple(sorted(pods.items())),
        )


def _node(at: float, devices: tuple[GpuDeviceReading, ...]) -> GpuReading:
    """The node's sums (None where any device's part is missing)."""
    return GpuReading(
        at,
        devices=len(devices),
        online_used_hundredths=_sum([d.online_percent for d in devices]),
        batch_used_hundredths=_sum([d.batch_percent for d in devices]),
        online_memory_bytes=_sum([d.online_memory_bytes for d in devices]),
        memory_total_bytes=_sum([d.memory_total_bytes for d in devices]),
        per_device=devices,
    )


class _Owners:
    """PID -> (pod, container, tier) through /proc/<pid>/cgroup and the pods' cgroups."""

    def __init__(self, topo: Topology, cgroups: Cgroups, proc_root: str) -> None:
        self.topo = topo
        self.hierarchy = cgroups.hierarchy
        self.proc_root = proc_root
        # Deepest first, so a pod cgroup nested in another's path is matched first.
        self.places = sorted(topo.placed, key=lambda p: -len(p.cgroup))
        self.cache: dict[int, tuple[str | None, str | None, Tier | None]] = {}

    def __call__(self, pid: int) -> tuple[str | None, str | None, Tier | None]:
        if pid not in self.cache:
            self.cache[pid] = self._find(pid)
        return self.cache[pid]

    def _find(self, pid: int) -> tuple[str | None, str | None, Tier | None]:
        path = cgroup_of(pid, self.hierarchy, self.proc_root)
        if path is None:
            return None, None, None
        for place in self.places:
            if path == place.cgroup or path.startswith(place.cgroup + "/"):
                rest = path[len(place.cgroup) :].strip("/")
                return place.key, _container(place, rest.split("/")[0], self.topo), place.tier
        return None, None, None


def _container(place: PodPlace, name: str, topo: Topology) -> str | None:
    """The container whose cgroup directory under the pod is `name`."""
    if not name:
        return None
    pod = place.state.pod
    for container, cid in pod.container_ids.items():
        candidates = topo.layout.container_candidates(_runtime(cid.runtime), cid.id)
        if name in candidates:
            return container
    return None


def _runtime(name: str) -> Runtime | None:
    try:
        return Runtime(name)
    except ValueError:
        return None
