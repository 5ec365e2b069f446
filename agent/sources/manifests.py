"""Reading Kubernetes documents from files, directories and stdin.

A path may hold several YAML documents (`---`) or one JSON document; each is parsed on its
own so one malformed document does not hide the others. `Pod`, `PodList` and `List` are
expanded into pods; other kinds are skipped with a warning.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from agent.errors import InputError, ManifestError
from agent.inputs import MAX_DOCUMENT_BYTES, parse_json, parse_yaml, read_stdin, read_text
from agent.sources.pod_manifest import parse_pod
from qos.pod import Pod

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# A manifest directory is a handful of files a level or two deep (kubelet's static pods are
# flat). `--pods /` must end in one line, not walk the whole filesystem.
MAX_WALK_DEPTH = 8
MAX_WALK_ENTRIES = 10_000
_DOC_START = re.compile(r"^---(?=\s|$)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Document:
    source: str
    index: int
    body: Any


@dataclass(frozen=True, slots=True)
class LoadedPod:
    source: str
    index: int
    pod: Pod


@dataclass(slots=True)
class LoadResult:
    pods: list[LoadedPod] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def manifest_files(path: Path) -> list[Path]:
    """The manifests `path` names: itself, or the YAML/JSON files below it (not hidden).

    The walk stays on real directories (symlinked ones are not followed), at most
    MAX_WALK_DEPTH levels and MAX_WALK_ENTRIES entries deep; beyond that it raises
    ManifestError: such a tree is not a manifest directory."""
    if not path.is_dir():
        return [path]
    return sorted(Path(f) for f, _, _ in manifest_stats(path))


def manifest_stats(top: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime ns) of each manifest below the directory `top`, walked as
    `manifest_files` walks it; a pod source checks these every tick, so the walk is plain
    `os.scandir` (one stat per file, no Path objects)."""
    found: list[tuple[str, int, int]] = []
    seen = 0
    pending = [(str(top), 0)]
    while pending:
        directory, depth = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as err:
            _unreadable(top, err)
        seen += len(entries)
        if seen > MAX_WALK_ENTRIES:
            raise ManifestError(
                str(top),
                None,
                f"more than {MAX_WALK_ENTRIES} entries below it; not a manifest directory",
            )
        dirs = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
        if depth >= MAX_WALK_DEPTH and dirs:
            raise ManifestError(
                str(top),
                None,
                f"directories nested deeper than {MAX_WALK_DEPTH} levels; not a manifest directory",
            )
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith(MANIFEST_SUFFIXES):
                continue
            if e.is_file():
                st = e.stat()
                found.append((e.path, st.st_size, st.st_mtime_ns))
        real = {e.name for e in entries if not e.is_symlink()}
        pending += [(os.path.join(directory, d), depth + 1) for d in reversed(dirs) if d in real]
    found.sort()
    return found


def _unreadable(top: Path, err: OSError) -> NoReturn:
    """A directory below `top` cannot be listed: its pods would go unseen, so say so."""
    raise ManifestError(str(top), None, f"cannot read {err.filename}: {err.strerror or err}")


def _split(text: str) -> list[str]:
    if text.lstrip().startswith(("{", "[")):
        return [text]
    starts = [m.start() for m in _DOC_START.finditer(text)]
    bounds = [0, *starts, len(text)]
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    return [re.sub(r"\A---", "", c) for c in chunks if c.strip() and c.strip() != "---"]


def _parse(chunk: str) -> Any:
    if chunk.lstrip().startswith(("{", "[")):
        return parse_json(chunk)
    return parse_yaml(chunk)


def _read(path: str, *, named: bool) -> str:
    """A manifest's text; a pipe is read only when named on the command line."""
    if path == "-":
        return read_stdin(MAX_DOCUMENT_BYTES)
    return read_text(path, MAX_DOCUMENT_BYTES, allow_pipe=named)


def read_documents(paths: Iterable[str]) -> Iterator[Document | ManifestError]:
    """Every non-empty document under `paths` (`-` is stdin), numbered from 1 per source."""
    for raw in paths:
        if raw == "-":
            files, named = [raw], True
        else:
            path = Path(raw)
            if not path.exists():
                yield ManifestError(raw, None, "no such file or directory")
                continue
            try:
                files, named = [str(f) for f in manifest_files(path)], not path.is_dir()
            except ManifestError as err:
                yield err
                continue
            except OSError as err:
                yield ManifestError(raw, None, f"cannot read: {err.strerror or err}")
                continue
        for file in files:
            source = "<stdin>" if file == "-" else file
            try:
                text = _read(file, named=named)
            except InputError as err:
                yield ManifestError(source, None, f"cannot read: {err}")
                continue
            for index, chunk in enumerate(_split(text), start=1):
                try:
                    body = _parse(chunk)
                except InputError as err:
                    yield ManifestError(source, index, err.reason)
                    continue
                if body is not None:
                    yield Document(source, index, body)


def _items(doc: Document) -> tuple[list[tuple[str, Any]], list[str]]:
    """(label, Pod body) pairs in a document, and warnings for what was skipped."""
    body = doc.body
    where = f"{doc.source}[doc {doc.index}]"
    if isinstance(body, list):
        body = {"kind": "List", "items": body}
    if not isinstance(body, dict):
        raise ManifestError(doc.source, doc.index, f"expected an object, got {type(body).__name__}")
    kind = body.get("kind")
    if kind == "Pod":
        return [("", body)], []
    if kind in ("PodList", "List"):
        items = body.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(doc.source, doc.index, "items: expected a list")
        pods, warnings = [], []
        implied = "Pod" if kind == "PodList" else None
        for i, item in enumerate(items):
            item_kind = item.get("kind", implied) if isinstance(item, dict) else None
            if item_kind == "Pod":
                pods.append((f"items[{i}]: ", item))
            else:
                what = item_kind or "an object with no kind"
                warnings.append(f"{where}: items[{i}]: skipped {what} (not a Pod)")
        return pods, warnings
    name = body.get("metadata", {}).get("name") if isinstance(body.get("metadata"), dict) else None
    what = f"{kind or 'an object with no kind'}{'/' + name if name else ''}"
    return [], [f"{where}: skipped {what} (not a Pod)"]


def load_pods(paths: Iterable[str]) -> LoadResult:
    """Parse every Pod under `paths`; problems are collected, never raised."""
    result = LoadResult()
    for doc in read_documents(paths):
        if isinstance(doc, ManifestError):
            result.errors.append(doc)
            continue
        try:
            items, warnings = _items(doc)
        except ManifestError as err:
            result.errors.append(err)
            continue
        result.warnings.extend(warnings)
        for label, body in items:
            try:
                result.pods.append(LoadedPod(doc.source, doc.index, parse_pod(body)))
            except ValueError as err:
                result.errors.append(ManifestError(doc.source, doc.index, f"{label}{err}"))
    return result
