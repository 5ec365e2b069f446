"""Reading untrusted input files with bounds: every path a user or another process can hand
colocd (manifests, policies, --config, the status file, traces) comes through here.

    text = read_text(path, limit=MAX_DOCUMENT_BYTES)   # regular file (or a named pipe if
                                                       # allowed), at most `limit` bytes, UTF-8
    data = parse_yaml(text) / parse_json(text)         # no duplicate keys, at most MAX_DEPTH
                                                       # levels and MAX_NODES values

Each failure is an `InputError` carrying a one-line reason; callers put their own
"<action> <target>:" in front. Nothing here raises RecursionError, hangs on a FIFO or a
device, or reads more than its limit: a 100k-bracket document, /dev/zero or a binary file
ends in one line.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from agent.errors import InputError

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NODES",
    "check_file",
    "check_shape",
    "parse_json",
    "parse_yaml",
    "read_stdin",
    "read_text",
]

# A kubectl dump of a few hundred pods is a few MiB; more than this is not a manifest.
MAX_DOCUMENT_BYTES = 16 * 2**20
# Pods nest about 10 levels (managedFields a few more); nothing colocd reads needs 100.
MAX_DEPTH = 100
# Values after YAML aliases are expanded (an alias "bomb" is small on disk, huge in memory).
MAX_NODES = 1_000_000


def read_text(path: str | os.PathLike[str], limit: int, *, allow_pipe: bool = False) -> str:
    """The UTF-8 text of a regular file (or of a named pipe when `allow_pipe`: one named on
    the command line, as `<(kubectl get pods -o yaml)` is), refusing more than `limit` bytes.

    A FIFO that is not allowed, a device, a socket or a directory is refused without
    reading; opening with O_NONBLOCK keeps a FIFO without a writer from hanging the open.
    An allowed pipe is opened blocking, so a writer that comes late is waited for."""
    try:
        pipe = allow_pipe and stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        pipe = False  # the open below says why
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | (0 if pipe else os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        missing = isinstance(err, FileNotFoundError)
        raise InputError(err.strerror or str(err), missing=missing) from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (pipe and stat.S_ISFIFO(mode))):
            raise InputError(f"not a regular file ({_kind(mode)})")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(2**20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise InputError(err.strerror or str(err)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise InputError(f"larger than {limit} bytes")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start})") from None


def check_file(path: str | os.PathLike[str], limit: int) -> None:
    """Refuse, without opening it, a file that exists but is not a regular file of at most
    `limit` bytes: for files another module reads (the journal, in isolation/)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise InputError(err.strerror or str(err)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file ({_kind(st.st_mode)})")
    if st.st_size > limit:
        raise InputError(f"larger than {limit} bytes")


def read_stdin(limit: int) -> str:
    """Standard input as text, refusing more than `limit` characters."""
    try:
        text = sys.stdin.read(limit + 1)
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(getattr(err, "strerror", None) or str(err)) from None
    if len(text) > limit:
        raise InputError(f"larger than {limit} characters")
    return text


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and stops composing past MAX_DEPTH (PyYAML's
    composer recurses once per level, so a deep document would end in RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # merged keys may be overridden: that is what `<<` is for
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base constructor reports it
            if duplicate:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """One YAML document (JSON is YAML too), bounded and without duplicate keys."""
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        raise InputError(f"not YAML or JSON: {_one_line(err)}") from None
    check_shape(data)
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """One JSON value, bounded and without duplicate keys."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise InputError(f"not JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
    except ValueError as err:  # from _no_duplicates
        raise InputError(f"not JSON: {err}") from None
    except RecursionError:
        raise InputError(f"not JSON: nested deeper than {MAX_DEPTH} levels") from None
    check_shape(data)
    return data


def check_shape(data: Any) -> None:
    """Refuse values nested deeper than MAX_DEPTH or holding more than MAX_NODES values
    (counted as a reader walks them, so a YAML alias counts each time it is used)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InputError(f"more than {MAX_NODES} values (YAML aliases included)")
        if isinstance(value, dict):
            children: Any = (*value.keys(), *value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if children and depth >= MAX_DEPTH:
            raise InputError(f"nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def first_problem(err: ValidationError, whole: str) -> str:
    """The first field a model refused, as "<dotted path>: <why>" (`whole` when the
    problem is the document itself)."""
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or whole}: {first['msg']}"


def _one_line(err: yaml.YAMLError) -> str:
    """PyYAML's problem and where, without the snippet of the document it quotes."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem is None:
        return " ".join(str(err).split())
    where = "" if mark is None else f" (line {mark.line + 1} column {mark.column + 1})"
    return f"{' '.join(str(problem).split())}{where}"
