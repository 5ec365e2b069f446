"""Fuzzing (issue 11): manifests, policies, annotations and quantities; cgroup file contents
(cpu.stat, memory.stat, io, PSI), malformed and non-UTF-8; status files, journals and
traces. Whatever the input, the readers end in colocd's own one-line errors (or a value
they say is missing), never another exception, and they write nothing.

The number of examples each test ran is printed at the end of the pytest run
(tests/fuzz_counts.py); the budgets below keep the whole module well under a minute.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.commands.status import render
from agent.errors import StatusError, TraceError
from agent.policy.load import load_policies
from agent.policy.resolve import resolve
from agent.report.status import FILENAME, read_status, staleness
from agent.sources.manifests import load_pods
from agent.sources.pod_checks import vet
from agent.sources.quantity import MAX_QUANTITY, parse_quantity
from agent.sources.trace import read_trace
from agent.sources.units import parse_bitrate, parse_duration
from isolation import _v1, _v2
from isolation._fds import key_int, pressure, single_int
from isolation.errors import JournalError
from isolation.journal import FILENAME as JOURNAL
from isolation.journal import Journal
from qos.errors import TierAnnotationError
from qos.pod import Container, Pod, Resources
from qos.state import NodeCapacity, NodeState
from qos.tiers import TIER_ANNOTATION, classify
from tests.fuzz_counts import counted


def fuzz(examples: int) -> settings:
    """A fixed budget per test (no deadline: the CI machine is shared and slow)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )


# --- strategies ----------------------------------------------------------------------------

# Digits from other scripts, signs, exponents, suffixes and junk around real quantities.
QUANTITY_TEXT = st.text(
    alphabet="0123456789.eE+-mkKMGTPEi \t\u00a0\uff11\u0663\u096a_nu",
    max_size=24,
)
QUANTITIES = st.one_of(
    QUANTITY_TEXT,
    st.sampled_from(["1e30", "99999999999Ei", "1Gi", "500m", "8", "-1", "0", "NaN", "inf"]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
RESOURCE_NAMES = st.sampled_from(
    ["cpu", "memory", "nvidia.com/gpu", "colocd.io/batch-cpu", "colocd.io/batch-memory", "x"]
)


@contextmanager
def scratch() -> Iterator[Path]:
    """A directory of our own; on exit nothing but what the test put there may be in it."""
    with tempfile.TemporaryDirectory(prefix="colocd-fuzz-") as d:
        yield Path(d)


def files_in(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


def dump(body: Any, as_json: bool) -> str:
    return json.dumps(body) if as_json else yaml.safe_dump(body, allow_unicode=True)


# --- manifests, annotations, quantities --------------------------------------------------


@st.composite
def pod_bodies(draw: st.DrawFn) -> dict[str, Any]:
    resources = {
        kind: draw(st.dictionaries(RESOURCE_NAMES, QUANTITIES, max_size=3))
        for kind in ("requests", "limits")
    }
    annotations = draw(
        st.dictionaries(
            st.sampled_from([TIER_ANNOTATION, "a", "b"]), st.text(max_size=12), max_size=2
        )
    )
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": draw(st.sampled_from(["Pod", "Pod", "PodList", "Node", None])),
        "metadata": {
            "name": draw(st.sampled_from(["web", "job-1", "Bad_Name", ""]) | st.text(max_size=8)),
            "namespace": "default",
            "uid": draw(st.sampled_from(["u1", "u2", ""])),
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "app", "resources": resources}]},
    }
    # Junk somewhere: a field replaced by anything at all.
    where = draw(st.sampled_from([None, "metadata", "spec", "containers", "resources", "root"]))
    junk = draw(JUNK)
    if where == "root":
        return junk if isinstance(junk, dict) else {"kind": "Pod", "x": junk}
    if where == "metadata":
        body["metadata"] = junk
    elif where == "spec":
        body["spec"] = junk
    elif where == "containers":
        body["spec"]["containers"] = junk
    elif where == "resources":
        body["spec"]["containers"][0]["resources"] = junk
    if body["kind"] == "PodList":
        body = {"kind": "PodList", "items": [body, dict(body)]}
    return body


@fuzz(150)
@given(st.lists(pod_bodies(), min_size=1, max_size=3), st.booleans())
def test_manifests_never_crash_the_reader(bodies: list[dict[str, Any]], as_json: bool) -> None:
    counted("manifests (structured)")
    with scratch() as d:
        path = d / ("pods.json" if as_json else "pods.yaml")
        if as_json:
            path.write_text(json.dumps(bodies[0]))
        else:
            path.write_text("---\n".join(dump(b, False) for b in bodies), encoding="utf-8")
        before = files_in(d)
        loaded = load_pods([str(d)])
        for err in loaded.errors:
            one_line(str(err))
        pods = [item.pod for item in loaded.pods]
        node, warnings = vet(NodeState.build("n", NodeCapacity(4000, 2**33), pods))
        assert len(node.pods) + sum(w.reason == "DuplicateUID" for w in warnings) == len(pods)
        for p in pods:
            for c in p.containers:
                for q in (*c.resources.requests.values(), *c.resources.limits.values()):
                    assert q.is_finite() and abs(q) <= MAX_QUANTITY
        assert files_in(d) == before


@fuzz(150)
@given(
    st.binary(max_size=400)
    | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_raw_bytes_as_manifests_and_policies_are_one_line_errors(raw: bytes) -> None:
    counted("manifests and policies (raw bytes)")
    with scratch() as d:
        path = d / "doc.yaml"
        path.write_bytes(raw)
        for err in (*load_pods([str(path)]).errors, *load_policies([str(path)]).errors):
            one_line(str(err))
        assert files_in(d) == {path}


@fuzz(300)
@given(
    st.dictionaries(st.sampled_from([TIER_ANNOTATION, "x"]), st.text(max_size=16)),
    st.sampled_from(["u", ""]),
)
def test_annotations_never_crash_classification(annotations: dict[str, str], uid: str) -> None:
    counted("annotations")
    pods = [
        Pod("ns", name, uid=uid, annotations=annotations, containers=(Container("c", Resources()),))
        for name in ("a", "b")
    ]
    for p in pods:
        decision = classify(p)
        assert decision.reason
        try:
            classify(p, strict=True)
        except TierAnnotationError as err:
            one_line(str(err))
            assert decision.warnings
    node, warnings = vet(NodeState.build("n", NodeCapacity(1000, 2**30), pods))
    assert len(node.pods) == (1 if uid else 2)
    for w in warnings:
        one_line(str(w))


@fuzz(500)
@given(QUANTITIES, st.sampled_from([None, "cpu", "memory", "colocd.io/batch-gpu"]))
def test_quantities_are_ascii_bounded_numbers_or_one_line_errors(
    value: object, resource: str | None
) -> None:
    counted("quantities")
    try:
        q = parse_quantity(value, resource)
    except ValueError as err:
        one_line(str(err))
        return
    assert isinstance(q, Decimal) and q.is_finite() and abs(q) <= MAX_QUANTITY
    assert not isinstance(value, str) or value.isascii()


@fuzz(300)
@given(st.text(alphabet="0123456789.msh kKMGbitBps\uff15\u0663", max_size=16) | JUNK)
def test_durations_and_bit_rates_are_ascii_or_one_line_errors(value: object) -> None:
    counted("durations and bit rates")
    for parse in (parse_duration, parse_bitrate):
        try:
            result = parse(value)
        except ValueError as err:
            one_line(str(err))
            continue
        assert isinstance(value, str) and value.isascii() and result >= 0


# --- policies ---------------------------------------------------------------------------------


@st.composite
def policy_bodies(draw: st.DrawFn) -> dict[str, Any]:
    number = st.one_of(
        st.integers(-5, 150), st.floats(allow_nan=True), st.booleans(), st.text(max_size=5)
    )
    spec: dict[str, Any] = {
        "scope": draw(st.sampled_from(["Cluster", "Node", "NodePool", "x"])),
        "reclaim": {
            "maxPercent": {"cpu": draw(number), "memory": draw(number)},
            "reserved": {"cpu": draw(QUANTITIES), "memory": draw(QUANTITIES)},
        },
        "margin": {"kp": draw(number), "bounds": {"min": draw(number), "max": draw(number)}},
    }
    if draw(st.booleans()):
        spec[draw(st.sampled_from(["reclaim", "eviction", "tiers", "isolation"]))] = draw(JUNK)
    return {
        "apiVersion": "colocd.io/v1alpha1",
        "kind": "ColocationPolicy",
        "metadata": {"name": draw(st.sampled_from(["p", "q", "Bad_Name"]))},
        "spec": spec,
    }


@fuzz(150)
@given(st.lists(policy_bodies(), min_size=1, max_size=2), st.booleans())
def test_policies_never_crash_validation_or_resolution(
    bodies: list[dict[str, Any]], as_json: bool
) -> None:
    counted("policies")
    with scratch() as d:
        for i, body in enumerate(bodies):
            (d / f"p{i}.{'json' if as_json else 'yaml'}").write_text(dump(body, as_json))
        loaded = load_policies([str(d)])
        for err in loaded.errors:
            one_line(str(err))
        for item in loaded.policies:
            for percent in (item.policy.spec.reclaim and item.policy.spec.reclaim.max_percent,):
                if percent is not None:
                    assert not isinstance(percent.cpu, bool) and not isinstance(
                        percent.memory, bool
                    )
        resolution = resolve([p.policy for p in loaded.policies], "node-1", {})
        try:
            resolution.qos_settings()
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            assert str(err)


# --- cgroup file contents --------------------------------------------------------------------


def _psi(prefix: str, draw: st.DrawFn) -> bytes:
    avg = st.one_of(
        st.floats(0, 100).map(lambda f: f"{f:.2f}"),
        st.sampled_from(["nan", "inf", "-1.00", "1e3", "101.00", "", "\u0663.00"]),
    )
    total = st.one_of(st.integers(0, 2**64).map(str), st.sampled_from(["-1", "x", "", "\uff11"]))
    fields = f"avg10={draw(avg)} avg60={draw(avg)} avg300={draw(avg)} total={draw(total)}"
    return f"{prefix} {fields}".encode()


@st.composite
def cgroup_files(draw: st.DrawFn) -> bytes:
    """Kernel-shaped files (key value lines, PSI lines, io lines) with faults, or any bytes."""
    kind = draw(st.sampled_from(["stat", "psi", "io", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "psi":
        lines = [_psi("some", draw)] + ([_psi("full", draw)] if draw(st.booleans()) else [])
        return b"\n".join(lines) + b"\n"
    value = st.one_of(
        st.integers(0, 2**70).map(str), st.sampled_from(["-5", "x", "", "1.5", "\uff11", "nan"])
    )
    if kind == "io":
        fields = " ".join(f"{k}={draw(value)}" for k in ("rbytes", "wbytes", "rios", "wios"))
        text = f"8:0 {fields}\n8:0 Read {draw(value)}\n8:0 Write {draw(value)}\n"
        return text.encode("utf-8", "surrogatepass")
    keys = [
        "usage_usec",
        "nr_periods",
        "nr_throttled",
        "throttled_usec",
        "inactive_file",
        "anon",
        "total_inactive_file",
        "total_rss",
        "throttled_time",
    ]
    lines = [f"{draw(st.sampled_from(keys))} {draw(value)}" for _ in range(draw(st.integers(0, 6)))]
    raw = "\n".join(lines).encode()
    if draw(st.booleans()):  # a torn or corrupted byte
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at + 1 :]
    return raw


def _count_ok(v: int | None) -> bool:
    return v is None or (isinstance(v, int) and 0 <= v < 2**70)


@fuzz(600)
@given(cgroup_files())
def test_cgroup_file_contents_read_as_numbers_or_missing(raw: bytes) -> None:
    counted("cgroup files (cpu.stat, memory.stat, io, PSI)")
    keys = (b"usage_usec", b"nr_throttled", b"inactive_file", b"total_rss", b"throttled_time")
    assert all(_count_ok(key_int(raw, k)) for k in keys)
    assert _count_ok(single_int(raw))
    p = pressure(raw)
    if p is not None:
        for field, value in p._asdict().items():
            if value is None:
                continue
            if field.endswith("total_us"):
                assert _count_ok(value)
            else:
                assert math.isfinite(value) and 0 <= value <= 100
    for io in (_v1._io(raw, raw), _v2._io(raw)):
        assert io is not None and all(_count_ok(v) for v in io)


@fuzz(200)
@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 100), st.integers(0, 2**63))
def test_well_formed_psi_lines_read_back(a10: float, a60: float, a300: float, total: int) -> None:
    counted("PSI lines (well formed)")
    line = f"some avg10={a10:.2f} avg60={a60:.2f} avg300={a300:.2f} total={total}\n".encode()
    p = pressure(line + line.replace(b"some", b"full"))
    assert p is not None and p.some_total_us == total == p.full_total_us
    assert p.some_avg10 == float(f"{a10:.2f}")


# --- status files, journals, traces ----------------------------------------------------------


@st.composite
def status_texts(draw: st.DrawFn) -> bytes:
    base: dict[str, Any] = {
        "format": 1,
        "node": "n",
        "written_at": 1.7e9,
        "tick_s": 1.0,
        "ticks": 1,
        "pods": {"online": 1},
        "budgets": [],
        "margin": {"fraction": 0.05, "millicores": 50, "indicator": None, "reason": "r"},
    }
    kind = draw(st.sampled_from(["mutated", "raw", "text"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    key = draw(st.sampled_from(sorted(base)))
    base[key] = draw(JUNK | st.sampled_from([math.nan, math.inf, 1e300, -1e300]))
    return json.dumps(base).encode()


@fuzz(200)
@given(status_texts())
def test_status_files_are_statuses_or_one_line_errors(raw: bytes) -> None:
    counted("status files")
    with scratch() as d:
        (d / FILENAME).write_bytes(raw)
        try:
            status = read_status(d)
        except StatusError as err:
            one_line(str(err))
        else:
            assert math.isfinite(status.written_at) and status.tick_s > 0
            why = staleness(status, 1.7e9)
            assert why is None or "\n" not in why
            assert render(status, 1.7e9)
        assert files_in(d) == {d / FILENAME}


@fuzz(150)
@given(
    st.binary(max_size=300)
    | st.lists(JUNK.map(json.dumps), max_size=4).map(lambda ls: "\n".join(ls).encode())
    | st.lists(
        st.fixed_dictionaries({"cgroup": JUNK, "knob": JUNK, "texts": JUNK}).map(json.dumps),
        max_size=3,
    ).map(
        lambda ls: (
            '{"journal": 1, "cgroupRoot": "/sys/fs/cgroup", "version": 1}\n' + "\n".join(ls)
        ).encode()
    )
)
def test_journals_load_or_are_one_line_errors_and_are_left_alone(raw: bytes) -> None:
    counted("journals")
    with scratch() as d:
        path = d / JOURNAL
        path.write_bytes(raw)
        try:
            journal = Journal(d, "/sys/fs/cgroup", 1)
        except JournalError as err:
            one_line(str(err))
        else:
            for entry in journal:
                assert isinstance(entry.cgroup, str) and all(
                    isinstance(t, str) for t in entry.texts
                )
        assert path.read_bytes() == raw  # reading never rewrites or deletes
        assert files_in(d) == {path}


@st.composite
def trace_texts(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["csv", "jsonl", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    cell = st.one_of(
        st.integers(-5, 10**6).map(str), st.sampled_from(["", "nan", "inf", "x", "1e400", "\uff11"])
    )
    columns = ["t", "cpu_capacity_milli", "online_cpu_milli", "batch_cpu_demand_milli"]
    rows = [[draw(cell) for _ in columns] for _ in range(draw(st.integers(0, 4)))]
    if kind == "csv":
        return "\n".join(",".join(r) for r in [columns, *rows]).encode()
    return "\n".join(json.dumps(dict(zip(columns, r, strict=True))) for r in rows).encode()


@fuzz(200)
@given(trace_texts())
def test_traces_are_rows_or_one_line_errors(raw: bytes) -> None:
    counted("traces")
    with scratch() as d:
        path = d / "trace.csv"
        path.write_bytes(raw)
        try:
            rows = read_trace(str(path))
        except TraceError as err:
            one_line(str(err))
        else:
            assert rows and all(math.isfinite(r.t) for r in rows)
        assert files_in(d) == {path}
