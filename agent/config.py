"""`Settings`: colocd's whole configuration, one frozen pydantic model built from sections.

    Settings
     ├── qos        qos.settings.QosSettings        (the brain: tiers, predictor, margin, ...)
     ├── isolation  isolation.settings.IsolationSettings  (cgroup root, journal, rewrites)
     ├── agent      AgentSettings                   (node, tick, fast path, metrics, status)
     └── network    agent.policy.model.NetworkSpec  (uplink shaping, as a policy writes it;
                    with --pods only: on Kubernetes the policies in force set it)

Loaded once (`load`), from an optional YAML/JSON file (`--config FILE`, the same three
sections as keys) with the command-line flags laid over it, and the process environment
(NODE_NAME, and systemd's NOTIFY_SOCKET). Each section is then passed down to the package
that owns it; nothing else in colocd reads `os.environ`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError, InputError
from agent.inputs import first_problem, parse_yaml, read_text
from agent.policy.model import NetworkSpec
from isolation.errors import UnsafeNameError
from isolation.layout import normalize_cgroup
from isolation.settings import IsolationSettings
from qos.settings import Indicator, QosSettings
from qos.strict_numbers import StrictNumbers
from qos.units import MAX_NODE_CPUS, MAX_NODE_MEMORY_BYTES

__all__ = [
    "MIN_TICK_S",
    "NODE_NAME_ENV",
    "NOTIFY_SOCKET_ENV",
    "AgentSettings",
    "FastPathSettings",
    "Settings",
    "load",
    "node_name_from",
    "parse_address",
    "read_mapping",
    "validated",
]

NODE_NAME_ENV = "NODE_NAME"
NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
DEFAULT_STATE_DIR = Path("/var/lib/colocd")
MAX_CONFIG_BYTES = 2**20  # settings and policies are a few KiB
MIN_TICK_S = 0.1

M = TypeVar("M", bound=BaseModel)


class _Section(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9464` for IPv6, `:9464` for every address) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class FastPathSettings(_Section):
    """The watcher between ticks: it clamps batch as soon as online demand surges."""

    enabled: bool = Field(True, description="Run the fast path between ticks.")
    interval_s: float = Field(
        0.05,
        gt=0,
        description="How often online CPU use is read between ticks (the reaction time is "
        "about one or two of these); it costs a few reads whatever the number of pods.",
    )
    stall_interval_s: float = Field(
        0.25,
        gt=0,
        description="How often each online pod's own CPU stall (PSI) is read between ticks "
        "where no PSI trigger watches it (a file per pod: at 50 ms it was most of the "
        "agent's CPU on a 250-pod node). Not below interval_s.",
    )
    surge_milli: int = Field(
        100,
        ge=0,
        description="Online CPU use above the last tick's predicted online demand by more "
        "than this (millicores, over one interval) counts as a surge and makes the brain "
        "decide again at once.",
    )
    stall_fraction: float = Field(
        0.1,
        gt=0,
        le=1,
        description="An online pod stalled on CPU (PSI some) for more than this fraction of "
        "the time since its stall was last read counts as a surge.",
    )
    psi_triggers: bool = Field(
        True,
        description="Wake on PSI poll triggers written to the online pods' cpu.pressure "
        "files where the kernel accepts them; the interval reader runs either way.",
    )
    trigger_stall_s: float = Field(
        0.05, gt=0, description="PSI trigger threshold: stall time per window (seconds)."
    )
    trigger_window_s: float = Field(
        1.0,
        ge=0.5,
        le=10,
        description="PSI trigger window (seconds; the kernel accepts 0.5-10 s, and "
        "multiples of 2 s only without CAP_SYS_RESOURCE).",
    )
    min_quota_drop: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="A quota clamp is applied only when it cuts the quota in force by at "
        "least this fraction (cpuset clamps move whole CPUs anyway).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.stall_interval_s < self.interval_s:
            raise ValueError("fast_path.stall_interval_s must not be below interval_s")
        if self.trigger_stall_s >= self.trigger_window_s:
            raise ValueError("fast_path.trigger_stall_s must be below trigger_window_s")
        return self


class AgentSettings(_Section):
    """The daemon's own settings: where it runs, how often, and where it reports."""

    node_name: str = Field(
        "",
        description="This node's name (default: $NODE_NAME; with pods_dir, else the host name).",
    )
    # A floor, so a typo (--tick 1e-9) cannot busy-loop a core: a tick reads every pod.
    tick_s: float = Field(
        1.0, ge=MIN_TICK_S, description=f"Seconds between two full ticks (at least {MIN_TICK_S:g})."
    )
    fast_path: FastPathSettings = Field(default_factory=FastPathSettings)
    metrics_addr: str | None = Field(
        None, description="HOST:PORT to serve Prometheus metrics on; none when unset."
    )
    pods_dir: Path | None = Field(
        None,
        description="Directory of Pod manifests (static pods) used as the pod source; unset: "
        "the pods the Kubernetes API binds to this node.",
    )
    kubeconfig: Path | None = Field(
        None,
        description="Kubernetes credentials (unset: in-cluster, else the default kubeconfig).",
    )
    state_dir: Path = Field(
        DEFAULT_STATE_DIR,
        description="Holds the status file (and, unless isolation.state_dir says "
        "otherwise, the journal of original cgroup values).",
    )
    dry_run: bool = Field(False, description="Print the plan and the writes; write nothing.")
    node_cgroup: str = Field(
        "",
        description="The cgroup whose usage is the node's (relative to the hierarchy root; "
        "'' = the root). Set it where the node is itself a cgroup, e.g. a kind node.",
    )
    cpu_milli: int | None = Field(
        None,
        gt=0,
        le=MAX_NODE_CPUS * 1000,
        description="Node CPU capacity in millicores (default: the host's CPUs).",
    )
    memory_bytes: int | None = Field(
        None,
        gt=0,
        le=MAX_NODE_MEMORY_BYTES,
        description="Node memory capacity in bytes (default: the host's RAM).",
    )
    cpu_manager_state: Path = Field(
        Path("/var/lib/kubelet/cpu_manager_state"),
        description="kubelet's CPU manager checkpoint. Under the static policy kubelet owns "
        "the cpusets of Guaranteed pods with whole CPUs: dedicated pods take kubelet's "
        "CPUs, the shared pool is its defaultCpuSet, and colocd writes no pod's cpuset but "
        "batch's. Absent file: colocd picks exclusive CPUs itself.",
    )
    cpu_topology_root: Path = Field(
        Path("/sys/devices/system/cpu"),
        description="Where each CPU's topology (hyperthread siblings) and NUMA node are read "
        "from; colocd picks whole cores, on one NUMA node where they fit.",
    )
    block_devices_root: Path = Field(
        Path("/sys/block"),
        description="Where the node's block devices are read from (their MAJOR:MINOR numbers "
        "key batch's io.max), once at start.",
    )
    notify_socket: str | None = Field(
        None,
        description="systemd's notify socket (default: $NOTIFY_SOCKET, which systemd sets for "
        "a Type=notify unit): READY=1 after the first tick, WATCHDOG=1 every tick.",
    )
    kill_grace_s: float = Field(
        30.0,
        ge=0,
        description="With pods_dir (a bare host, no Eviction API), an evicted pod's processes "
        "get SIGTERM, then SIGKILL after this many seconds (kubelet's default grace period).",
    )
    latency_file: Path | None = Field(
        None,
        description="A file the online service writes its latency to (one number, in the "
        "unit of qos.margin.target, e.g. p99 ms): the input of margin.indicator latency.",
    )
    pods_stale_after_s: float = Field(
        300.0,
        gt=0,
        description="While the pod source cannot be read the last pods it gave are used; "
        "after this long the readings are withheld from the brain, so the budgets degrade "
        "to 0 and batch is held back (failing towards online).",
    )

    @field_validator("metrics_addr")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_address(value)
        return value

    @field_validator("notify_socket")
    @classmethod
    def _notify_socket(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("/", "@")):
            raise ValueError(f"{value!r} is not an absolute path or an @abstract socket name")
        return value

    @field_validator("node_cgroup")
    @classmethod
    def _cgroup(cls, value: str) -> str:
        try:
            return normalize_cgroup(value)
        except UnsafeNameError as err:
            raise ValueError(str(err)) from None


class Settings(_Section):
    qos: QosSettings = Field(default_factory=QosSettings)
    isolation: IsolationSettings = Field(default_factory=IsolationSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    network: NetworkSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_state_dir(cls, data: Any) -> Any:
        """The journal goes in the agent's state dir unless isolation names its own."""
        if not isinstance(data, Mapping):
            return data
        agent, isolation = data.get("agent"), data.get("isolation")
        if isinstance(agent, Mapping) and "state_dir" in agent:
            if isolation is None:
                isolation = {}
            if isinstance(isolation, Mapping) and "state_dir" not in isolation:
                data = {**data, "isolation": {**isolation, "state_dir": agent["state_dir"]}}
        return data

    @model_validator(mode="after")
    def _latency_has_a_source(self) -> Self:
        if self.qos.margin.indicator is Indicator.LATENCY and self.agent.latency_file is None:
            raise ValueError("qos.margin.indicator latency needs agent.latency_file to read it")
        return self


def read_mapping(path: str, action: str) -> dict[str, Any]:
    """A YAML or JSON file holding one mapping (empty file: {}); a regular file of at most
    MAX_CONFIG_BYTES, without duplicate keys or deep nesting."""
    try:
        data = parse_yaml(read_text(path, MAX_CONFIG_BYTES))
    except InputError as err:
        raise ConfigError(f"{action} {path}: {err.reason}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{action} {path}: expected a mapping of settings")
    return data


def validated(model: type[M], data: Mapping[str, Any], where: str) -> M:
    """`model` from `data`, or one ConfigError line naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{where}: {first_problem(err, 'settings')}{more}") from err


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def load(
    config_file: str | None,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The settings: the file (if any), then `overrides` (from flags, nested like the file,
    None values dropped), then the node name and systemd's notify socket from the
    environment (`os.environ` unless given) when still unset."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = read_mapping(config_file, "load config") if config_file else {}
    data = _merge(data, _drop_none(overrides))
    agent_data = data.get("agent")
    has_socket = isinstance(agent_data, Mapping) and "notify_socket" in agent_data
    if environ.get(NOTIFY_SOCKET_ENV) and not has_socket:
        data = _merge(data, {"agent": {"notify_socket": environ[NOTIFY_SOCKET_ENV]}})
    where = f"load config {config_file}" if config_file else "load settings"
    settings = validated(Settings, data, where)
    if not settings.agent.node_name:
        if settings.agent.pods_dir is not None:  # a bare host: its own name will do
            name = environ.get(NODE_NAME_ENV, "").strip() or socket.gethostname()
        else:
            name = node_name_from(None, environ)
        agent = settings.agent.model_copy(update={"node_name": name})
        settings = settings.model_copy(update={"agent": agent})
    return settings


def node_name_from(flag: str | None, environ: Mapping[str, str] | None = None) -> str:
    """`--node-name`, else the NODE_NAME variable the DaemonSet sets from the downward API."""
    environ = os.environ if environ is None else environ
    name = (flag or environ.get(NODE_NAME_ENV, "")).strip()
    if not name:
        raise ConfigError(
            f"find the node name: pass --node-name or set {NODE_NAME_ENV} "
            "(the DaemonSet sets it from spec.nodeName)"
        )
    return name


def _drop_none(tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            inner = _drop_none(value)
            if inner:
                out[key] = inner
        elif value is not None:
            out[key] = value
    return out
