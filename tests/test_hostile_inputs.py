"""Hostile inputs to every CLI path (issue 11): each ends in one `colocd: error:` line and a
non-zero exit, never a traceback or a hang, and changes nothing.

Real files on disk and the real command line: `main()` in-process where that is enough,
a subprocess with a timeout where the failure used to be a hang (a FIFO, `--pods /`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.report.status import FILENAME, write_status
from tests.test_agent_status import status

DEEP_YAML = "[" * 100_000 + "]" * 100_000
DEEP_JSON = '{"a":' * 100_000 + "1" + "}" * 100_000
DEEP_BLOCK_YAML = "".join(f"{' ' * i}a:\n" for i in range(3000)) + " " * 3000 + "a: 1\n"

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, uid: {uid}}}
spec:
  containers:
  - name: app
    resources:
      requests: {{cpu: "{cpu}", memory: "{memory}"}}
"""


def policy(spec: str) -> str:
    return (
        "apiVersion: colocd.io/v1alpha1\nkind: ColocationPolicy\nmetadata: {name: p}\n"
        f"spec:\n  scope: Cluster\n{spec}"
    )


def one_error_line(err: str) -> str:
    """The only stderr line: a `colocd: error:` line, no traceback."""
    assert "Traceback" not in err and "RecursionError" not in err
    errors = [line for line in err.splitlines() if line.startswith("colocd: error:")]
    assert len(errors) == 1, err
    assert all(len(line) < 400 for line in err.splitlines()), err
    return errors[0]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, one_error_line(capsys.readouterr().err)


def colocd(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- deeply nested documents ------------------------------------------------------------


@pytest.mark.parametrize(
    "text", [DEEP_YAML, DEEP_JSON, DEEP_BLOCK_YAML], ids=["flow", "json", "block"]
)
@pytest.mark.parametrize(
    "command", ["classify", "policy validate", "policy resolve --node n", "run --config"]
)
def test_a_deeply_nested_document_is_one_line(
    command: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    argv = [*command.split(), str(path)]
    if command == "run --config":
        pods = tmp_path / "pods"
        pods.mkdir()
        argv = ["run", "--once", "--pods", str(pods), "--config", str(path)]
    code, line = cli(capsys, *argv)
    assert code == 1
    assert "nested deeper than 100 levels" in line or "larger than" in line, line


def alias_bomb() -> str:
    """Nine levels of ten aliases each: small on disk, 10**9 values once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join([*lines, "kind: Pod"]) + "\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (alias_bomb(), "more than 1000000 values (YAML aliases included)"),
        ("a: &a [*a]\nkind: Pod\n", "nested deeper than 100 levels"),
    ],
    ids=["bomb", "cycle"],
)
def test_yaml_aliases_cannot_blow_up(
    text: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(text)
    code, line = cli(capsys, "classify", str(path))
    assert code == 1 and reason in line, line


def test_deep_nesting_through_a_real_process_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(DEEP_JSON)
    done = colocd("classify", str(path))
    assert done.returncode == 1
    assert "nested deeper than 100 levels" in one_error_line(done.stderr)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (DEEP_JSON, "nested deeper than 100 levels"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "not UTF-8 text"),
        ("{" * 10 + "x" * (2 * 2**20), "larger than 1048576 bytes"),
    ],
    ids=["deep", "binary", "huge"],
)
def test_a_hostile_status_file_is_one_line(
    content: str | bytes, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / FILENAME
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, line = cli(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 1 and reason in line, line


def test_a_fifo_status_file_neither_hangs_nor_is_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / FILENAME)
    started = time.monotonic()
    done = colocd("status", "--state-dir", str(tmp_path), timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert "not a regular file (a named pipe)" in one_error_line(done.stderr)


def test_a_deep_journal_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not Path("/sys/fs/cgroup").is_dir():
        pytest.skip("revert needs a cgroup hierarchy to write back to")
    journal = tmp_path / "cgroup-journal.jsonl"
    journal.write_text(DEEP_JSON + "\n" + "{}\n")
    code = main(["revert", "--state-dir", str(tmp_path)])
    errors = capsys.readouterr().err.splitlines()
    # One line per unreadable record (no traceback), each kept in the file.
    assert code == 1 and len(errors) == 2, errors
    assert "line 1 unreadable" in errors[0] and "line 2 unreadable" in errors[1]
    assert journal.read_text().startswith('{"a":')  # left for a human to look at


@pytest.mark.parametrize("kind", ["deep", "binary", "fifo", "duplicate"])
def test_a_hostile_kubeconfig_is_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kubeconfig"
    if kind == "deep":
        path.write_text(DEEP_YAML)
    elif kind == "binary":
        path.write_bytes(b"\x00\xff" * 100)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("apiVersion: v1\nkind: Config\nkind: Config\n")
    code, line = cli(capsys, "policy", "controller", "--kubeconfig", str(path))
    assert code == 1 and line.startswith(f"colocd: error: load Kubernetes credentials from {path}:")


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
@pytest.mark.parametrize("command", ["revert", "run --once"])
def test_a_journal_that_is_not_a_file_is_one_line(
    kind: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "cgroup-journal.jsonl"
    if kind == "fifo":
        os.mkfifo(journal)  # would hang the reader
    elif kind == "device":
        journal.symlink_to("/dev/zero")  # would never end
    else:
        with open(journal, "wb") as f:
            f.truncate(65 * 2**20)  # sparse: costs no disk
    argv = [*command.split(), "--state-dir", str(tmp_path)]
    if command == "run --once":
        pods = tmp_path / "pods"
        pods.mkdir()
        argv += ["--pods", str(pods)]
    code, line = cli(capsys, *argv)
    assert code == 1 and line.startswith(f"colocd: error: read journal {journal}:"), line


# --- the pod directory walk --------------------------------------------------------------


def test_run_pods_root_ends_in_one_line_instead_of_walking_the_filesystem(tmp_path: Path) -> None:
    started = time.monotonic()
    done = colocd("run", "--once", "--dry-run", "--pods", "/", "--state-dir", str(tmp_path))
    assert time.monotonic() - started < 60
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert line.startswith("colocd: error: read /"), line
    assert not any(tmp_path.iterdir())


def test_a_pod_directory_with_too_many_entries_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    for i in range(10_001):
        (pods / f"n{i}.txt").touch()
    code, line = cli(capsys, "run", "--once", "--pods", str(pods))
    assert code == 1 and "more than 10000 entries below it" in line


def test_the_walk_does_not_follow_symlinked_directories_nor_read_fifos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    (pods / "loop").symlink_to(pods)  # would recurse forever if followed
    (pods / "up").symlink_to("/")
    os.mkfifo(pods / "trap.yaml")
    (pods / "web.yaml").write_text(POD.format(name="web", uid="u1", cpu="1", memory="1Gi"))
    assert main(["classify", "-o", "json", str(pods)]) == 0
    out = capsys.readouterr().out
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["web"]


def test_a_named_pipe_given_on_the_command_line_is_read(tmp_path: Path) -> None:
    """`colocd classify <(kubectl get pods -o yaml)` still works: a pipe named on purpose."""
    fifo = tmp_path / "pods.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "classify", "-o", "json", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # a writer that comes late: the reader waits for it, not sees EOF
    with open(fifo, "w") as w:
        w.write(POD.format(name="web", uid="u1", cpu="1", memory="1Gi"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["name"] == "web"


# --- the status file's time stamp ------------------------------------------------------


@pytest.mark.parametrize("written_at", [time.time() + 3600, 1e300])
def test_a_status_from_the_future_is_not_fresh(
    written_at: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(tmp_path, status(written_at))
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "in the future" in err and "Traceback" not in err


@pytest.mark.parametrize("stamp", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_status_stamped_nan_or_infinite_is_not_a_status(
    stamp: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(tmp_path, status(time.time()))
    path = tmp_path / FILENAME
    body = json.loads(path.read_text())
    path.write_text(
        json.dumps(body).replace(f'"written_at": {body["written_at"]}', f'"written_at": {stamp}')
    )
    assert stamp in path.read_text()
    code, line = cli(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 1 and "written_at" in line, line


def test_a_status_with_a_bad_tick_is_not_a_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(tmp_path, status(time.time()))
    path = tmp_path / FILENAME
    path.write_text(path.read_text().replace('"tick_s":1.0', '"tick_s":true'))
    code, line = cli(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 1 and "tick_s" in line, line


# --- quantities, duplicate keys, strict types --------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "memory", "reason"),
    [
        ("1e30", "1Gi", "quantity '1e30' is more than a node can have"),
        ("1", "99999999999Ei", "quantity '99999999999Ei' is more than a node can have"),
        ("1e15", "1Gi", "cpu quantity 1000000000000000 is more than a node can have"),
        ("1", "128Pi", "memory quantity 144115188075855872 is more than a node can have"),
        ("\uff11", "1Gi", "not ASCII"),  # FULLWIDTH DIGIT ONE
        ("1", "٣Gi", "not ASCII"),
    ],
)
def test_absurd_or_non_ascii_pod_quantities_are_refused(
    cpu: str, memory: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(POD.format(name="web", uid="u1", cpu=cpu, memory=memory), encoding="utf-8")
    code, line = cli(capsys, "classify", str(path))
    assert code == 1 and reason in line, line


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("  reclaim:\n    reserved: {cpu: '1e30'}\n", "more than a node can have"),
        ("  reclaim:\n    reserved: {memory: 99999999999Ei}\n", "more than a node can have"),
        ("  reclaim:\n    reserved: {memory: '٣Gi'}\n", "not ASCII"),
        ("  reclaim:\n    maxPercent: {cpu: true}\n", "cpu: true is not a number"),
        (
            "  reclaim:\n    maxPercent: {cpu: 50}\n  reclaim:\n    maxPercent: {cpu: 60}\n",
            "duplicate key 'reclaim'",
        ),
        ("  reclaim:\n    maxPercent: {cpu: 50, cpu: 60}\n", "duplicate key 'cpu'"),
    ],
)
def test_policies_with_absurd_values_duplicate_keys_or_bools_are_refused(
    spec: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy(spec), encoding="utf-8")
    code, line = cli(capsys, "policy", "validate", str(path))
    assert code == 1 and reason in line, line


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--node-cpu", "1e30", "more than a node can have"),
        ("--node-memory", "99999999999Ei", "more than a node can have"),
        ("--node-cpu", "\uff18", "not ASCII"),  # FULLWIDTH DIGIT EIGHT
    ],
)
def test_node_capacity_flags_are_bounded_and_ascii(
    flag: str, value: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    code, line = cli(capsys, "run", "--once", "--pods", str(pods), flag, value)
    assert code == 1 and line.startswith(f"colocd: error: read {flag}:") and reason in line


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("agent:\n  tick_s: 1\nagent:\n  tick_s: 2\n", "duplicate key 'agent'"),
        ('{"agent": {"tick_s": 1, "tick_s": 2}}', "duplicate key 'tick_s'"),
        ("agent:\n  tick_s: true\n", "tick_s: true is not a number"),
        ("qos:\n  margin:\n    kp: false\n", "kp: false is not a number"),
        ("agent:\n  cpu_milli: 1000000000000\n", "cpu_milli"),
        ("agent:\n  metrics_addr: ':\uff19\uff14\uff16\uff14'\n", "is not HOST:PORT"),
    ],
)
def test_config_files_with_duplicate_keys_bools_or_absurd_values_are_refused(
    text: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "colocd.yaml"
    config.write_text(text, encoding="utf-8")
    pods = tmp_path / "pods"
    pods.mkdir()
    code, line = cli(capsys, "run", "--once", "--pods", str(pods), "--config", str(config))
    assert code == 1 and reason in line, line


def test_duplicate_keys_in_a_pod_manifest_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pod.yaml"
    text = POD.format(name="web", uid="u1", cpu="1", memory="1Gi")
    path.write_text(text.replace("kind: Pod\n", "kind: Pod\nkind: Pod\n"))
    code, line = cli(capsys, "classify", str(path))
    assert code == 1 and "duplicate key 'kind'" in line


def test_a_trace_that_is_deep_or_binary_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"t": 0, "x": ' + "[" * 5000 + "]" * 5000 + "}\n")
    code, line = cli(capsys, "simulate", "--trace", str(deep))
    assert code == 1 and "nested deeper" in line, line
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"t,cpu\n\xff\xfe\x00")
    code, line = cli(capsys, "simulate", "--trace", str(binary))
    assert code == 1 and "not UTF-8" in line, line


def test_nan_is_still_rejected_as_a_quantity() -> None:
    from agent.sources.quantity import parse_quantity

    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(math.nan)
