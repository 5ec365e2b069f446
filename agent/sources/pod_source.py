"""Where the agent learns which pods run on its node: the API server, or a manifest directory.

Both sources have the same face (`PodSource`), so the tick loop neither knows nor cares:

    source.start(); source.wait_synced(30)
    every tick: snap = source.snapshot()   # pods, synced, fresh, generation, problems
    at exit: source.stop()

- `ApiPodSource` watches `pods` with `fieldSelector=spec.nodeName=<node>` through an
  `Informer`. While the API server is away it keeps serving the cache (`fresh=False`).
- `DirPodSource` reads Pod manifests from a directory, like kubelet's static pods, for bare
  hosts and tests. `snapshot()` re-reads only when a file changed (path, size, mtime). If the
  directory becomes unreadable it keeps the last pods it read (`fresh=False`); a file that
  does not parse is reported in `problems` and its pods are left out.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.errors import ManifestError
from agent.sources.informer import InformerBacked
from agent.sources.kube import PODS
from agent.sources.manifests import load_pods, manifest_stats
from agent.sources.pod_manifest import parse_pod
from qos.pod import Pod


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """The pods on this node at one instant, sorted by `namespace/name`.

    `synced`: the source has been read completely at least once (do not act before).
    `fresh`: the last read worked; False means these are the last known pods.
    `generation`: grows whenever `pods` change, so a loop can skip unchanged work.
    `problems`: one line per object that could not be read (it is left out).
    """

    pods: tuple[Pod, ...]
    synced: bool
    fresh: bool
    generation: int
    problems: tuple[str, ...] = ()


class PodSource(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait_synced(self, timeout_s: float) -> bool: ...

    def snapshot(self) -> PodSnapshot: ...


def _sorted(pods: Mapping[str, Pod]) -> tuple[Pod, ...]:
    return tuple(pods[k] for k in sorted(pods))


class ApiPodSource(InformerBacked[Pod]):
    """The pods the API server has bound to this node."""

    resource = PODS
    selector = "spec.nodeName={node}"
    parse = staticmethod(parse_pod)

    def snapshot(self) -> PodSnapshot:
        snap = self._informer.snapshot()
        return PodSnapshot(
            pods=_sorted(snap.items),
            synced=snap.synced,
            fresh=snap.connected,
            generation=snap.generation,
            problems=tuple(f"pod {key}: {why}" for key, why in sorted(snap.problems.items())),
        )


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...] | str:
    """(path, size, mtime) of every manifest under `directory`, or why it cannot be read."""
    if not directory.is_dir():
        return f"read {directory}: not a readable directory"
    try:
        return tuple(manifest_stats(directory))
    except ManifestError as err:
        return str(err)
    except OSError as err:
        return f"read {directory}: {err.strerror or err}"


class DirPodSource:
    """Pods from the manifests in a directory (static pods), re-read when a file changes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] | str | None = None
        self._snapshot = PodSnapshot(pods=(), synced=False, fresh=False, generation=0)

    def start(self) -> None:
        self.snapshot()

    def check(self) -> str | None:
        """Why the directory cannot serve as a pod source (too big a tree, unreadable);
        None when it can. `colocd run` refuses to start on such a directory."""
        found = _fingerprint(self.directory)
        return found if isinstance(found, str) else None

    def stop(self) -> None:
        """Nothing runs in the background."""

    def wait_synced(self, timeout_s: float) -> bool:
        return self.snapshot().synced

    def snapshot(self) -> PodSnapshot:
        with self._lock:
            fingerprint = _fingerprint(self.directory)
            old = self._snapshot
            if isinstance(fingerprint, str):
                problem = f"{fingerprint}; keeping the last pods"
                self._snapshot = PodSnapshot(
                    old.pods, old.synced, False, old.generation, (problem,)
                )
            elif fingerprint != self._fingerprint or not old.fresh:
                self._snapshot = self._load(old)
                self._fingerprint = fingerprint
            return self._snapshot

    def _load(self, old: PodSnapshot) -> PodSnapshot:
        loaded = load_pods([str(self.directory)])
        pods = {item.pod.key: item.pod for item in loaded.pods}
        problems = tuple(str(e) for e in loaded.errors)
        ordered = _sorted(pods)
        generation = old.generation + (ordered != old.pods or not old.synced)
        return PodSnapshot(ordered, True, True, generation, problems)
