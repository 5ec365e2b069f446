"""The only writer of cgroup settings: batches of `Write`s in, an `ApplyReport` out.

Per batch (one per tick):
1. Each write is checked: a known knob, a cgroup path within its grammar (and, when written,
   resolving inside the hierarchy), a value its validator accepts, a knob this host has.
2. Writes are de-duplicated per (cgroup, knob); two different values for one file fail both.
3. Top-down (parents first) the knobs with a merge rule get their relaxed value
   (max(current, desired) or the looser limit / the cpuset union); then bottom-up (children
   first) every knob gets its final value. So raising goes parents before children, lowering
   children before parents, and a cpuset parent always covers its children.
4. Every write reads the current value first and writes only files that differ. A cache
   keyed by (cgroup, knob) skips the read while the value is younger than `force_rewrite_s`.
5. Before the first change to a (cgroup, knob), its original text is journaled on disk.
   `revert()` writes every original back, in the same safe order, and forgets what it did.
   `sweep()` drops the cache and journal entries of cgroups that are gone (pods churn).
6. A cgroup that vanished (ENOENT/ENODEV) is a normal event: debug log, counted, `vanished`.
   The kernel refusing a value (EINVAL, EBUSY, EACCES, ...) is `failed`, with file and value.

`cpu.idle` pins `cpu.shares` (see `isolation.knobs`): while idle is 1 shares are skipped;
clearing idle restores shares from the batch, or else from the journal's original.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from isolation.cgroups import Cgroups, KnobValue
from isolation.errors import (
    CgroupGoneError,
    JournalError,
    KnobError,
    UnsafeNameError,
    UnsupportedKnobError,
    WriteError,
)
from isolation.journal import Entry, Journal
from isolation.knobs import ORDER, Knob, Merge, knob
from isolation.layout import normalize_cgroup
from isolation.settings import IsolationSettings

__all__ = ["ApplyReport", "Executor", "Level", "Outcome", "Result", "Write"]

log = logging.getLogger(__name__)


class Level(IntEnum):
    """Where a cgroup sits in kubelet's tree; writes are ordered by it, then by depth."""

    NODE = 0  # kubepods
    QOS = 1  # kubepods/burstable, kubepods/besteffort
    POD = 2
    CONTAINER = 3


@dataclass(frozen=True, slots=True)
class Write:
    """Set `knob` of `cgroup` (relative to the hierarchy root) to `value` (the knob's unit)."""

    knob: str
    cgroup: str
    value: Any
    level: int = Level.POD


class Outcome(StrEnum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"
    VANISHED = "vanished"


@dataclass(frozen=True, slots=True)
class Result:
    write: Write
    outcome: Outcome
    reason: str = ""
    errno: int | None = None


@dataclass(frozen=True, slots=True)
class ApplyReport:
    results: tuple[Result, ...] = ()

    def of(self, outcome: Outcome) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.outcome is outcome)

    @property
    def applied(self) -> tuple[Result, ...]:
        return self.of(Outcome.APPLIED)

    @property
    def failed(self) -> tuple[Result, ...]:
        return self.of(Outcome.FAILED)

    @property
    def vanished(self) -> tuple[Result, ...]:
        return self.of(Outcome.VANISHED)

    def counts(self) -> dict[str, int]:
        counted = Counter(r.outcome for r in self.results)
        return {o.value: counted.get(o, 0) for o in Outcome}

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.counts().items())


@dataclass(slots=True)
class _Item:
    write: Write
    knob: Knob
    cgroup: str
    desired: Any  # validated, and normalized through the file format
    current: KnobValue | None = None
    result: Result | None = None
    pinned: list[_Item] = field(default_factory=list)
    # Held out of the walks: written right after the pinning knob of its cgroup.
    held_by: _Item | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.cgroup, self.knob.name)

    def down(self) -> tuple[int, int, int]:
        return (self.write.level, self.cgroup.count("/"), ORDER[self.knob.name])

    def up(self) -> tuple[int, int, int]:
        level, depth, order = self.down()
        return (-level, -depth, -order)


# knob -> the knob that pins it (cpu.shares -> cpu.idle)
_PINNED_BY = {p: k.name for k in map(knob, ORDER) for p in k.pins}


class Executor:
    def __init__(
        self,
        cgroups: Cgroups,
        journal: Journal | None,
        *,
        force_rewrite_s: float = 60.0,
        revert_on_exit: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cgroups = cgroups
        self.journal = journal
        self.force_rewrite_s = force_rewrite_s
        self.revert_on_exit = revert_on_exit
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[Any, float]] = {}
        self._journaling = journal is not None
        self._prepared: dict[Write, _Item | Result] = {}  # the last batch's writes, checked
        # Cumulative outcomes since start (for metrics): Outcome -> count.
        self.totals: Counter[Outcome] = Counter()

    @classmethod
    def from_settings(cls, cgroups: Cgroups, settings: IsolationSettings) -> Executor:
        """The executor the agent runs with: journal in the state dir, settings applied."""
        journal = Journal(settings.state_dir, str(cgroups.hierarchy.root), cgroups.version)
        for d in journal.damaged:  # kept in the file; `colocd revert` reports them too
            log.warning("journal %s: line %d unreadable, kept: %s", journal.path, d.line, d.reason)
        return cls(
            cgroups,
            journal,
            force_rewrite_s=settings.force_rewrite_s,
            revert_on_exit=settings.revert_on_exit,
        )

    # --- public ------------------------------------------------------------------------------

    def close(self) -> ApplyReport | None:
        """On shutdown: revert everything when configured to (`revert_on_exit`)."""
        return self.revert() if self.revert_on_exit else None

    def apply(self, writes: Iterable[Write]) -> ApplyReport:
        """Apply one batch (a tick's worth); the report has one result per write, in order."""
        writes = list(writes)
        results: dict[int, Result] = {}
        items: dict[int, _Item] = {}
        checked: dict[Write, _Item | Result] = {}
        for i, w in enumerate(writes):
            prepared = self._prepare(w, checked)
            if isinstance(prepared, Result):
                results[i] = prepared
            else:
                items[i] = prepared
        self._prepared = checked
        self._dedupe(items)
        self._pin(items)
        live = [it for it in items.values() if it.result is None and it.held_by is None]
        top_down = sorted((it for it in live if it.knob.merge is not Merge.NONE), key=_Item.down)
        for it in top_down:
            self._relax(it)
        for it in sorted((it for it in live if it.result is None), key=_Item.up):
            self._finish(it)
        for i, it in items.items():
            if it.result is None and it.held_by is not None:
                held = it.held_by.result
                why = f"{it.held_by.knob.name} {held.outcome if held else 'not written'}"
                it.result = Result(it.write, Outcome.SKIPPED, f"not written: {why}")
            assert it.result is not None
            results.setdefault(i, it.result)
        report = ApplyReport(tuple(results[i] for i in range(len(writes))))
        self.totals.update(r.outcome for r in report.results)
        return report

    def revert(self) -> ApplyReport:
        """Write back every journaled original; forget those restored (or whose cgroup is
        gone). Failures stay in the journal for the next attempt."""
        if self.journal is None:
            return ApplyReport()
        writes, bad = [], []
        for entry in self.journal:
            try:
                writes.append(self._original(entry, Level.NODE))
            except (KnobError, ValueError, IndexError) as err:
                w = Write(entry.knob, entry.cgroup, None, Level.NODE)
                bad.append(Result(w, Outcome.FAILED, f"revert {entry.knob}: {err}"))
        self._cache.clear()
        self._journaling = False
        try:
            report = self.apply(writes)
        finally:
            self._journaling = True
        done = [
            (normalize_cgroup(r.write.cgroup), r.write.knob)
            for r in report.results
            if r.outcome in (Outcome.APPLIED, Outcome.SKIPPED, Outcome.VANISHED)
        ]
        self.journal.forget(done)
        return ApplyReport(report.results + tuple(bad))

    def restore_write(self, cgroup: str, knob_name: str, level: int) -> Write | None:
        """The write that puts back the journaled original of (cgroup, knob); None when
        colocd never changed it (or its journal entry cannot be parsed)."""
        entry = None if self.journal is None else self.journal.get(cgroup, knob_name)
        if entry is None:
            return None
        try:
            return self._original(entry, level)
        except (KnobError, ValueError, IndexError):
            return None

    def restore_writes(self, knob_name: str, level: int) -> list[Write]:
        """The writes that put back every journaled original of `knob_name`."""
        if self.journal is None:
            return []
        cgroups = [e.cgroup for e in self.journal if e.knob == knob_name]
        writes = (self.restore_write(c, knob_name, level) for c in cgroups)
        return [w for w in writes if w is not None]

    def _original(self, entry: Entry, level: int) -> Write:
        k = knob(entry.knob)
        binding = k.binding(self.cgroups.version)
        if binding is None:
            raise ValueError(k.absent_reason(self.cgroups.version))
        return Write(entry.knob, entry.cgroup, binding.parse(entry.texts), level)

    # --- preparation -------------------------------------------------------------------------

    def _prepare(self, w: Write, checked: dict[Write, _Item | Result]) -> _Item | Result:
        """The checked write, remembered in `checked` (this batch's); a write the last batch
        had too (most of a tick's) reuses its checks. Only the last batch is kept: a memo of
        every write ever made would grow with each new value and each pod churned."""
        try:
            known = checked.get(w) or self._prepared.get(w)
        except TypeError:  # a value that cannot be hashed: checked every time
            return self._check(w)
        if known is None:
            known = self._check(w)
        checked[w] = known
        if isinstance(known, Result):
            return known
        return _Item(w, known.knob, known.cgroup, known.desired)

    def _check(self, w: Write) -> _Item | Result:
        try:
            k = knob(w.knob)
            cgroup = normalize_cgroup(w.cgroup)
            value = k.check(w.value)
        except (KnobError, UnsafeNameError) as err:
            return Result(w, Outcome.FAILED, str(err))
        reason = self.cgroups.unsupported(k.name)
        if reason is not None:
            return Result(w, Outcome.UNSUPPORTED, reason)
        return _Item(w, k, cgroup, self.cgroups.normalize(k.name, value))

    def _dedupe(self, items: dict[int, _Item]) -> None:
        first: dict[tuple[str, str], int] = {}
        for i, it in list(items.items()):
            j = first.setdefault(it.key, i)
            if j == i:
                continue
            other = items[j]
            if it.desired == other.desired:
                it.result = Result(it.write, Outcome.SKIPPED, "duplicate of an earlier write")
                continue
            reason = (
                f"set {it.knob.name} of {it.cgroup}: conflicting values in one batch "
                f"({other.write.value!r} and {it.write.value!r})"
            )
            it.result = Result(it.write, Outcome.FAILED, reason)
            if other.result is None or other.result.outcome is not Outcome.FAILED:
                other.result = Result(other.write, Outcome.FAILED, reason)

    def _pin(self, items: dict[int, _Item]) -> None:
        """Hand each pinned write (cpu.shares) to its cgroup's pinning write (cpu.idle)."""
        pinners = {it.key: it for it in items.values() if it.knob.pins and it.result is None}
        for it in items.values():
            by = _PINNED_BY.get(it.knob.name)
            if by is not None and it.result is None and (it.cgroup, by) in pinners:
                pinner = pinners[(it.cgroup, by)]
                pinner.pinned.append(it)
                it.held_by = pinner

    # --- reading and writing -----------------------------------------------------------------

    def _fail(self, it: _Item, err: Exception) -> Result:
        if isinstance(err, CgroupGoneError):
            log.debug("set %s of %s: cgroup vanished", it.knob.name, it.cgroup)
            self._forget_cgroup(it.cgroup)
            return Result(it.write, Outcome.VANISHED, str(err))
        if isinstance(err, UnsupportedKnobError):
            return Result(it.write, Outcome.UNSUPPORTED, err.reason)
        if isinstance(err, WriteError):
            return Result(it.write, Outcome.FAILED, str(err), err.errno)
        if isinstance(err, JournalError):
            return Result(it.write, Outcome.FAILED, f"not written: {err}")
        return Result(it.write, Outcome.FAILED, str(err))

    def _forget_cgroup(self, cgroup: str) -> None:
        for key in [k for k in self._cache if k[0] == cgroup]:
            del self._cache[key]

    def sweep(self, in_use: Collection[str] = frozenset()) -> int:
        """Drop the cached values and journal entries of cgroups that no longer exist, so
        neither grows as pods come and go. Only cgroups outside `in_use` (the ones the caller
        still manages) are looked at; how many of those still exist: they linger, and the
        next sweep looks again. A journal that cannot be compacted raises JournalError (its
        entries stay until the next sweep)."""
        known = {cgroup for cgroup, _ in self._cache}
        if self.journal is not None:
            known |= self.journal.cgroups()
        unused = known.difference(in_use)
        gone = {c for c in unused if not self.cgroups.exists(c)}
        for cgroup in gone:
            self._forget_cgroup(cgroup)
        if gone and self.journal is not None:
            self.journal.drop_cgroups(gone)
        return len(unused) - len(gone)

    def _cached(self, it: _Item) -> bool:
        hit = self._cache.get(it.key)
        if hit is None or hit[0] != it.desired:
            return False
        return self._clock() - hit[1] < self.force_rewrite_s

    def _remember(self, it: _Item, value: Any) -> None:
        self._cache[it.key] = (value, self._clock())

    def _read(self, it: _Item) -> KnobValue | None:
        try:
            return self.cgroups.read(it.knob.name, it.cgroup)
        except (CgroupGoneError, UnsupportedKnobError, WriteError) as err:
            it.result = self._fail(it, err)
            return None

    def _write(self, it: _Item, value: Any, current: KnobValue) -> bool:
        try:
            if self._journaling and self.journal is not None:
                self.journal.record(it.cgroup, it.knob.name, current.texts)
            self.cgroups.write(it.knob.name, it.cgroup, value, current)
        except (CgroupGoneError, UnsupportedKnobError, WriteError, JournalError) as err:
            it.result = self._fail(it, err)
            self._cache.pop(it.key, None)
            return False
        return True

    def _pinned_now(self, it: _Item) -> bool:
        """cpu.shares while the cgroup's cpu.idle reads 1: the kernel would refuse it."""
        by = _PINNED_BY.get(it.knob.name)
        if by is None or self.cgroups.unsupported(by) is not None:
            return False
        try:
            return bool(self.cgroups.read(by, it.cgroup).value)
        except (CgroupGoneError, UnsupportedKnobError, WriteError):
            return False

    # --- the two walks -----------------------------------------------------------------------

    def _relax(self, it: _Item) -> None:
        """Top-down: write the relaxed value (never tighter than what is there)."""
        if self._cached(it):
            it.result = Result(it.write, Outcome.SKIPPED, "unchanged (cached)")
            return
        current = self._read(it)
        if current is None:
            return
        if current.value == it.desired:
            it.result = Result(it.write, Outcome.SKIPPED, "already set")
            self._remember(it, it.desired)
            return
        if self._pinned_now(it):
            it.result = Result(it.write, Outcome.SKIPPED, "cpu.idle=1 pins cpu.shares")
            return
        relaxed = it.knob.relaxed(current.value, it.desired)
        if relaxed == current.value:
            it.current = current
            return
        if not self._write(it, relaxed, current):
            return
        if relaxed == it.desired:
            it.result = Result(it.write, Outcome.APPLIED, "")
            self._remember(it, it.desired)

    def _finish(self, it: _Item) -> None:
        """Bottom-up: write the final value."""
        current, it.current = it.current, None
        if current is None:
            if self._cached(it) and not it.pinned:
                it.result = Result(it.write, Outcome.SKIPPED, "unchanged (cached)")
                return
            current = self._read(it)
            if current is None:
                return
        if current.value == it.desired:
            it.result = Result(it.write, Outcome.SKIPPED, "already set")
            self._remember(it, it.desired)
            self._after_pinner(it, changed=False, was=current.value)
            return
        if self._pinned_now(it):
            it.result = Result(it.write, Outcome.SKIPPED, "cpu.idle=1 pins cpu.shares")
            return
        if it.knob.pins and not current.value:
            try:
                self._journal_pinned(it)
            except JournalError as err:  # shares' original unknown: idle must not touch it
                it.result = self._fail(it, err)
                for p in it.pinned:
                    p.result = Result(p.write, Outcome.SKIPPED, f"not written: {err}")
                return
        if not self._write(it, it.desired, current):
            for p in it.pinned:
                p.result = Result(p.write, Outcome.SKIPPED, f"not written: {it.knob.name} failed")
            return
        it.result = Result(it.write, Outcome.APPLIED, "")
        self._remember(it, it.desired)
        self._after_pinner(it, changed=True, was=current.value)

    def _journal_pinned(self, it: _Item) -> None:
        """Setting cpu.idle rewrites cpu.shares too: journal shares' original first."""
        if not (self._journaling and self.journal is not None):
            return
        for name in it.knob.pins:
            if (it.cgroup, name) in self.journal:
                continue
            try:
                value = self.cgroups.read(name, it.cgroup)
            except (CgroupGoneError, UnsupportedKnobError, WriteError):
                continue
            self.journal.record(it.cgroup, name, value.texts)

    def _after_pinner(self, it: _Item, *, changed: bool, was: Any) -> None:
        """After cpu.idle: skip shares while idle, restore them when idle was just cleared."""
        if not it.knob.pins:
            return
        for name in it.knob.pins:
            self._cache.pop((it.cgroup, name), None)
        if it.desired:
            for p in it.pinned:
                p.result = Result(p.write, Outcome.SKIPPED, "cpu.idle=1 pins cpu.shares")
            return
        if not (changed and was):
            for p in it.pinned:
                self._finish(p)
            return
        # idle 1 -> 0: the kernel reset shares to 1024; put back what is wanted or was there.
        for name in it.knob.pins:
            wanted = next((p for p in it.pinned if p.knob.name == name), None)
            if wanted is not None:
                self._finish(wanted)
                continue
            entry = self.journal.get(it.cgroup, name) if self.journal is not None else None
            if entry is None:
                it.result = Result(
                    it.write, Outcome.APPLIED, f"{name} reset by the kernel; no original known"
                )
                continue
            k = knob(name)
            binding = k.binding(self.cgroups.version)
            assert binding is not None
            restore = _Item(
                Write(name, it.cgroup, None, it.write.level),
                k,
                it.cgroup,
                binding.parse(entry.texts),
            )
            self._finish(restore)
            if restore.result is not None and restore.result.outcome is not Outcome.APPLIED:
                it.result = Result(
                    it.write, Outcome.APPLIED, f"{name} not restored: {restore.result.reason}"
                )
