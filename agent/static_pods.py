"""Pods from a directory of manifests (like kubelet's static pods), for bare hosts and tests.

`snapshot()` re-reads the directory only when a manifest changed (path, size, mtime). When
the directory cannot be read (removed, unmounted) it keeps the last pods it read and says
so (`fresh` False, with the problem), so the loop keeps the last good state; a manifest
that does not parse is reported in `problems` and its pods are left out.

It has the face the tick loop expects of every pod source (`agent.loop.PodSource`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.manifests import load_pods, manifest_files
from qos.pod import Pod

__all__ = ["PodSnapshot", "StaticPods"]

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """The pods at one instant, sorted by `namespace/name`. `synced`: read completely at
    least once (the loop acts only then); `fresh`: the last read worked; `problems`: one
    line per thing that could not be read."""

    pods: tuple[Pod, ...]
    synced: bool
    fresh: bool
    problems: tuple[str, ...] = ()


def _fingerprint(directory: Path) -> Fingerprint | None:
    """(path, size, mtime) of every manifest below `directory`; None when unreadable."""
    if not directory.is_dir():
        return None
    try:
        files = manifest_files(directory)
        return tuple((str(p), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()])
    except OSError:
        return None


class StaticPods:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._fingerprint: Fingerprint | None = None
        self._snapshot = PodSnapshot((), synced=False, fresh=False)

    def snapshot(self) -> PodSnapshot:
        fingerprint = _fingerprint(self.directory)
        old = self._snapshot
        if fingerprint is None:
            problem = f"read {self.directory}: not a readable directory; keeping the last pods"
            self._snapshot = PodSnapshot(old.pods, old.synced, False, (problem,))
        elif fingerprint != self._fingerprint or not old.fresh:
            loaded = load_pods([str(self.directory)])
            pods = {item.pod.key: item.pod for item in loaded.pods}
            problems = tuple(str(e) for e in loaded.errors)
            self._snapshot = PodSnapshot(tuple(pods[k] for k in sorted(pods)), True, True, problems)
            self._fingerprint = fingerprint
        return self._snapshot
