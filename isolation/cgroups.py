"""The front over cgroup v1 and v2: callers name a knob and a cgroup (a path relative to the
hierarchy root, the same under every v1 controller) and never branch on the version. The
backend (`_v1` or `_v2`) is chosen once, from the detected `Hierarchy`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, NamedTuple

from isolation import _v1, _v2
from isolation._fds import FdCache
from isolation.detect import Hierarchy
from isolation.errors import CgroupGoneError, UnsupportedKnobError, WriteError
from isolation.knobs import Binding, Knob, knob
from isolation.readings import CgroupSample

__all__ = ["Cgroups", "KnobValue"]

_GONE = (errno.ENOENT, errno.ENODEV)


class KnobValue(NamedTuple):
    """A knob as read: the parsed value and the raw text of each of its files."""

    value: Any
    texts: tuple[str, ...]


class Cgroups:
    def __init__(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        self.version = hierarchy.version
        self._backend: _v1.Backend | _v2.Backend = (
            _v2.Backend(hierarchy) if self.version == 2 else _v1.Backend(hierarchy)
        )
        self._fds = FdCache()

    # --- structure ---------------------------------------------------------------------------

    def dirs(self, cgroup: str) -> dict[str, Path]:
        """The cgroup's directory per v1 controller, or `{"unified": dir}` on v2."""
        return self._backend.dirs(cgroup)

    def dir(self, controller: str, cgroup: str) -> Path:
        return self._backend.dir(controller, cgroup)

    def exists(self, cgroup: str) -> bool:
        return self._backend.exists(cgroup)

    # --- knobs -------------------------------------------------------------------------------

    def unsupported(self, name: str) -> str | None:
        """Why `name` cannot be used on this host at all, or None (raises for unknown names)."""
        k = knob(name)
        binding = k.binding(self.version)
        if binding is None:
            return k.absent_reason(self.version)
        return self._backend.host_unsupported(binding)

    def binding(self, name: str) -> tuple[Knob, Binding]:
        k = knob(name)
        reason = self.unsupported(name)
        if reason is not None:
            raise UnsupportedKnobError(name, reason)
        binding = k.binding(self.version)
        assert binding is not None
        return k, binding

    def normalize(self, name: str, value: Any) -> Any:
        """`value` as it will read back from this host's files (page-rounded memory, the
        weight a shares value converts to, ...): what diffs compare against."""
        _, binding = self.binding(name)
        texts = binding.format(value, None)
        return binding.parse(tuple(t or "" for t in texts))

    def paths(self, name: str, cgroup: str) -> tuple[Path, ...]:
        _, binding = self.binding(name)
        directory = self._backend.dir(binding.controller, cgroup)
        return tuple(directory / f for f in binding.files)

    def _missing(self, name: str, path: Path, err: OSError) -> Exception:
        if err.errno == errno.ENODEV or not path.parent.is_dir():
            return CgroupGoneError(str(path.parent))
        return UnsupportedKnobError(name, f"{path.name} does not exist in {path.parent}")

    def read(self, name: str, cgroup: str) -> KnobValue:
        _, binding = self.binding(name)
        texts = []
        for path in self.paths(name, cgroup):
            try:
                with open(path) as f:
                    texts.append(f.read())
            except OSError as err:
                if err.errno in _GONE:
                    raise self._missing(name, path, err) from err
                raise WriteError(str(path), "", err.errno, f"read: {err.strerror}") from err
        return KnobValue(binding.parse(tuple(texts)), tuple(texts))

    def write(
        self, name: str, cgroup: str, value: Any, current: KnobValue | None = None
    ) -> list[str]:
        """Write `value` (already validated); with `current`, only files whose text changes.
        Returns the files written."""
        _, binding = self.binding(name)
        texts = binding.format(value, None if current is None else current.value)
        written = []
        for i, (path, text) in enumerate(zip(self.paths(name, cgroup), texts, strict=True)):
            if text is None or (current is not None and text.strip() == current.texts[i].strip()):
                continue
            self._write_file(name, path, text)
            written.append(str(path))
        return written

    def _write_file(self, name: str, path: Path, text: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            if err.errno in _GONE:
                raise self._missing(name, path, err) from err
            raise WriteError(str(path), text, err.errno, err.strerror or "open failed") from err
        try:
            # cgroup files take one entry per write(2) (io.max, throttle files).
            for line in text.split("\n"):
                if line:
                    os.write(fd, line.encode())
        except OSError as err:
            if err.errno in _GONE:
                raise self._missing(name, path, err) from err
            raise WriteError(str(path), text, err.errno, err.strerror or "write failed") from err
        finally:
            os.close(fd)

    # --- readers -----------------------------------------------------------------------------

    def sample(
        self, cgroup: str, *, memory_stat: bool = True, io: bool = False, psi: bool = True
    ) -> CgroupSample | None:
        """Usage, throttling and pressure of one cgroup; None when it does not exist.
        Descriptors stay open between calls (see `retain`)."""
        return self._backend.sample(self._fds, cgroup, memory_stat=memory_stat, io=io, psi=psi)

    def retain(self, cgroups: list[str]) -> None:
        """Close the descriptors of every cgroup not in `cgroups` (call once per tick)."""
        keep: set[str] = set()
        for cgroup in cgroups:
            keep |= self._backend.directories(cgroup)
        self._fds.retain(keep)

    def close(self) -> None:
        self._fds.close()
