"""The front over cgroup v1 and v2: callers name a knob and a cgroup (a path relative to the
hierarchy root, the same under every v1 controller) and never branch on the version. The
backend (`_v1` or `_v2`) is chosen once, from the detected `Hierarchy`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from isolation import _v1, _v2
from isolation._fds import FdCache
from isolation.detect import Hierarchy
from isolation.errors import CgroupGoneError, UnsupportedKnobError, WriteError
from isolation.knobs import Binding, Knob, knob, parse_cpuset
from isolation.layout import join
from isolation.readings import POD_TICK, CgroupSample, ReadSet

__all__ = ["Cgroups", "KnobValue"]

_GONE = (errno.ENOENT, errno.ENODEV)


class KnobValue(NamedTuple):
    """A knob as read: the parsed value and the raw text of each of its files."""

    value: Any
    texts: tuple[str, ...]


class Cgroups:
    def __init__(self, hierarchy: Hierarchy, *, max_open_files: int | None = None) -> None:
        self.hierarchy = hierarchy
        self.version = hierarchy.version
        self._backend: _v1.Backend | _v2.Backend = (
            _v2.Backend(hierarchy) if self.version == 2 else _v1.Backend(hierarchy)
        )
        # Descriptors kept open by the readers (None: as many as RLIMIT_NOFILE allows).
        self._fds = FdCache(max_open_files)

    # --- structure ---------------------------------------------------------------------------

    def dirs(self, cgroup: str) -> dict[str, Path]:
        """The cgroup's directory per v1 controller, or `{"unified": dir}` on v2."""
        return self._backend.dirs(cgroup)

    def dir(self, controller: str, cgroup: str) -> Path:
        return Path(self._backend.dir(controller, cgroup))

    def exists(self, cgroup: str) -> bool:
        return self._backend.exists(cgroup)

    def walk(self, controller: str, cgroup: str) -> list[str]:
        """`cgroup` and every cgroup below it in `controller`'s hierarchy, parents first
        (empty when `cgroup` does not exist there). On v2 every controller is the one tree."""
        top = self._backend.dir(controller, cgroup)
        found = []
        for dirpath, dirnames, _files in os.walk(top):
            dirnames.sort()
            rel = os.path.relpath(dirpath, top)
            found.append(cgroup if rel == "." else join(cgroup, rel))
        return found

    def children(self, cgroup: str) -> list[str] | None:
        """The cgroups directly below `cgroup` where CPU use is accounted (cpuacct on v1),
        sorted; None when `cgroup` is not there."""
        try:
            with os.scandir(self._backend.usage_dir(cgroup)) as entries:
                names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return [join(cgroup, n) for n in names]

    def pressure_file(self, cgroup: str, resource: str = "cpu") -> str | None:
        """The cgroup's `<resource>.pressure` file (PSI), or None where the host keeps no
        per-cgroup PSI (pure v1). Whether the file exists is not checked."""
        directory = self._backend.pressure_dir(cgroup)
        return None if directory is None else f"{directory}/{resource}.pressure"

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

    def paths(self, name: str, cgroup: str) -> tuple[str, ...]:
        """The knob's files in `cgroup`, resolved and checked inside the hierarchy."""
        _, binding = self.binding(name)
        directory = self._backend.dir(binding.controller, cgroup)
        return tuple(f"{directory}/{f}" for f in binding.files)

    def _missing(self, name: str, path: str, err: OSError) -> Exception:
        directory, _, file = path.rpartition("/")
        if err.errno == errno.ENODEV or not os.path.isdir(directory):
            return CgroupGoneError(directory)
        return UnsupportedKnobError(name, f"{file} does not exist in {directory}")

    def read(self, name: str, cgroup: str) -> KnobValue:
        _, binding = self.binding(name)
        texts = []
        for path in self.paths(name, cgroup):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    texts.append(os.read(fd, 65536).decode())
                finally:
                    os.close(fd)
            except OSError as err:
                if err.errno in _GONE:
                    raise self._missing(name, path, err) from err
                raise WriteError(path, "", err.errno, f"read: {err.strerror}") from err
        return KnobValue(binding.parse(tuple(texts)), tuple(texts))

    def write(
        self, name: str, cgroup: str, value: Any, current: KnobValue | None = None
    ) -> list[str]:
        """Write `value` (already validated); with `current`, only files whose text changes.
        Returns the files written."""
        try:
            return self._write(name, cgroup, value, current)
        except WriteError as err:
            v2_empty_cpuset = name == "cpuset.cpus" and self.version == 2 and not value
            if not (err.errno == errno.ENOSPC and v2_empty_cpuset):
                raise
        # The kernel refuses to empty the cpuset of a populated cgroup: write what "" means.
        return self._write(name, cgroup, self._inherited_cpus(cgroup), current)

    def _write(self, name: str, cgroup: str, value: Any, current: KnobValue | None) -> list[str]:
        _, binding = self.binding(name)
        texts = binding.format(value, None if current is None else current.value)
        written = []
        for i, (path, text) in enumerate(zip(self.paths(name, cgroup), texts, strict=True)):
            if text is None or (current is not None and text.strip() == current.texts[i].strip()):
                continue
            self._write_file(name, path, text)
            written.append(path)
        return written

    def _inherited_cpus(self, cgroup: str) -> frozenset[int]:
        """What an empty v2 cpuset.cpus means: the CPUs of the nearest ancestor whose own
        cpuset.cpus is empty too (none set between them). Where the kernel refuses to empty
        the cpuset of a cgroup with tasks below it (ENOSPC), restoring an original "" writes
        these: what the cgroup inherits once nothing is set above it."""
        while cgroup:
            cgroup = cgroup.rsplit("/", 1)[0] if "/" in cgroup else ""
            directory = self._backend.dir("cpuset", cgroup)
            try:
                if cgroup:  # the root has no cpuset.cpus of its own
                    with open(directory + "/cpuset.cpus") as f:
                        if f.read().strip():
                            continue
                with open(directory + "/cpuset.cpus.effective") as f:
                    return parse_cpuset(f.read())
            except OSError:
                continue
        return frozenset()

    def _write_file(self, name: str, path: str, text: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            if err.errno in _GONE:
                raise self._missing(name, path, err) from err
            raise WriteError(path, text, err.errno, err.strerror or "open failed") from err
        try:
            # cgroup files take one entry per write(2) (io.max, throttle files); an empty
            # value (a v2 cpuset inheriting its parent's) is written as a bare newline.
            for line in [ln for ln in text.split("\n") if ln] or ["\n"]:
                os.write(fd, line.encode())
        except OSError as err:
            if err.errno in _GONE:
                raise self._missing(name, path, err) from err
            raise WriteError(path, text, err.errno, err.strerror or "write failed") from err
        finally:
            os.close(fd)

    # --- readers -----------------------------------------------------------------------------

    def sample(self, cgroup: str, what: ReadSet = POD_TICK) -> CgroupSample | None:
        """Usage, throttling and pressure of one cgroup; None when it does not exist.
        `what` picks the files beyond CPU and memory usage. Descriptors stay open between
        calls (see `retain`)."""
        return self._backend.sample(self._fds, cgroup, what)

    def sample_many(
        self, cgroups: Iterable[str], what: ReadSet = POD_TICK
    ) -> list[CgroupSample | None]:
        sample, fds = self._backend.sample, self._fds
        return [sample(fds, c, what) for c in cgroups]

    @property
    def open_files(self) -> int:
        """Descriptors kept open by the readers."""
        return len(self._fds)

    def retain(self, cgroups: Iterable[str]) -> None:
        """Forget every cgroup not in `cgroups`: close its descriptors, drop its checked
        paths (call once per tick with the cgroups still wanted)."""
        self._fds.retain(self._backend.retain(list(cgroups)))

    def close(self) -> None:
        self._fds.close()
