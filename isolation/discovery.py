"""Discovery: from pods (UID, QoS class, container IDs from status) to their cgroups.

It only looks: nothing is created. A pod whose cgroup (or a container whose scope) is not
there is reported in `missing`, with the path that was expected. A pod UID or container ID
outside its grammar raises `UnsafeNameError` before any path is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from isolation.cgroups import Cgroups
from isolation.layout import KubeletLayout, Runtime, check_container_id, check_pod_uid, join
from qos.k8s_qos import QOSClass, pod_qos_class
from qos.pod import Pod

__all__ = ["PodCgroups", "discover_pod"]


@dataclass(frozen=True, slots=True)
class PodCgroups:
    """Where one pod lives. Paths are relative to the hierarchy root (the same under every
    v1 controller); `cgroup` is None when the pod's directory was not found."""

    pod: Pod
    qos_class: QOSClass
    cgroup: str | None
    containers: Mapping[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


def _runtime(name: str) -> Runtime | None:
    try:
        return Runtime(name)
    except ValueError:
        return None


def discover_pod(pod: Pod, cgroups: Cgroups, layout: KubeletLayout) -> PodCgroups:
    qos = pod_qos_class(pod)
    if not pod.uid:
        return PodCgroups(pod, qos, None, {}, ("pod UID (the manifest has none)",))
    check_pod_uid(pod.uid)
    for cid in pod.container_ids.values():
        check_container_id(cid.id)
    expected = layout.pod_cgroup(qos, pod.uid)
    dirs = cgroups.dirs(expected)
    absent = [name for name, path in dirs.items() if not path.is_dir()]
    if len(absent) == len(dirs):
        return PodCgroups(pod, qos, None, {}, (f"pod cgroup {expected}",))
    missing = [f"pod cgroup {expected} in {name}" for name in absent]
    containers: dict[str, str] = {}
    for c in pod.containers:
        cid = pod.container_ids.get(c.name)
        if cid is None:
            missing.append(f"container {c.name} (no containerID in status)")
            continue
        candidates = layout.container_candidates(_runtime(cid.runtime), cid.id)
        found = next((n for n in candidates if cgroups.exists(join(expected, n))), None)
        if found is None:
            missing.append(f"container {c.name} cgroup {join(expected, candidates[0])}")
        else:
            containers[c.name] = join(expected, found)
    return PodCgroups(pod, qos, expected, containers, tuple(missing))
