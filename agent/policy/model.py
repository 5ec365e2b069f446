"""The ColocationPolicy spec, defined once as pydantic models.

The same models validate files (`colocd policy validate`), objects from the API server
(the policy watcher) and generate the CRD's OpenAPI schema (`agent.policy.crd`).

Every setting is optional: `None` means "this policy does not set it", so layers merge field
by field (see `agent.policy.resolve`). A few small objects are merged as a whole because
their fields only make sense together (`rate`/`ceil` of a traffic class, a PID margin's
`min`/`max`, a label selector, a priority band, a tier rule); they derive from `Atomic`.
Lists (`tiers.rules`, `nodeNames`, `workloads`) are replaced whole, never concatenated,
except `workloads`, which every applying policy contributes to (strongest first).

Units are written as people write them and kept as written, so provenance shows what the
author typed: quantities ("500m", "2Gi") via `agent.sources.quantity.parse_quantity`, durations
("30s", "5m") and bit rates ("200Mbit") via `agent.sources.units`. Converters to base units live on
the models (`seconds()`, `bits_per_second()`, ...).
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from agent.errors import PolicyError
from agent.sources.pod_manifest import DnsSubdomain
from agent.sources.quantity import parse_quantity
from agent.sources.units import BITRATE_PATTERN, DURATION_PATTERN, parse_bitrate, parse_duration
from qos.k8s_qos import QOSClass
from qos.pod import CPU, MEMORY
from qos.selector import LabelSelector, Operator, Requirement
from qos.strict_numbers import StrictNumbers
from qos.tiers import Tier, TierRule, TierSettings

API_GROUP = "colocd.io"
API_VERSION = "v1alpha1"
KIND = "ColocationPolicy"
PLURAL = "colocationpolicies"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# Kubernetes' own quantity grammar, as controller-gen writes it into CRDs.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


# --- unit-carrying strings ---------------------------------------------------------------


def _quantity_text(resource: str | None) -> Any:
    def check(value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"quantity must be a string or number, got {value!r}")
        text = str(value).strip()
        if parse_quantity(text, resource) < 0:
            raise ValueError(f"negative quantity {value!r}")
        return text

    return check


def _checked(parse: Any) -> Any:
    def check(value: object) -> str:
        parse(value)
        return str(value).strip()

    return check


def _quantity_type(resource: str | None) -> Any:
    return Annotated[
        str,
        BeforeValidator(_quantity_text(resource)),
        WithJsonSchema(
            {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True,
            }
        ),
    ]


CpuQuantity = _quantity_type(CPU)  # bounded by what a node can have
MemoryQuantity = _quantity_type(MEMORY)
Duration = Annotated[
    str,
    BeforeValidator(_checked(parse_duration)),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
Bitrate = Annotated[
    str,
    BeforeValidator(_checked(parse_bitrate)),
    WithJsonSchema({"type": "string", "pattern": BITRATE_PATTERN}),
]


def _percent(value: int | float) -> int | float:
    if not 0 <= value <= 100:
        raise ValueError(f"{value} is not a percentage between 0 and 100")
    return value


# An int stays an int (60, not 60.0) and a fraction of a percent is allowed (0.2).
Percent = Annotated[
    int | float,
    AfterValidator(_percent),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100}),
]


# --- bases -------------------------------------------------------------------------------


class Section(StrictNumbers):
    """A group of settings merged field by field across layers."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )
    atomic: ClassVar[bool] = False


class Atomic(Section):
    """Settings that only make sense together: a layer that sets it replaces it whole."""

    atomic: ClassVar[bool] = True


# --- selectors and tier rules --------------------------------------------------------------


class SelectorRequirement(Atomic):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values_fit_operator(self) -> SelectorRequirement:
        wants_values = self.operator in ("In", "NotIn")
        if wants_values and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if not wants_values and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelectorSpec(Atomic):
    """A Kubernetes label selector; an empty one matches everything."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[SelectorRequirement] | None = None

    @cached_property
    def selector(self) -> LabelSelector:
        """The evaluable selector, built once (a controller matches it against every node)."""
        return LabelSelector(
            match_labels=tuple(sorted((self.match_labels or {}).items())),
            match_expressions=tuple(
                Requirement(r.key, Operator(r.operator), tuple(r.values or ()))
                for r in self.match_expressions or ()
            ),
        )


class PriorityBand(Atomic):
    """Pod priority values, both ends included."""

    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PriorityBand:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class TierRuleSpec(Atomic):
    """Pods matching every condition given go to `tier` (first matching rule wins)."""

    name: str = Field(min_length=1, max_length=63)
    tier: Tier
    namespaces: list[str] | None = None
    priority: PriorityBand | None = None
    selector: LabelSelectorSpec | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> TierRuleSpec:
        if not self.namespaces and self.priority is None and self.selector is None:
            raise ValueError(f"rule {self.name!r} needs namespaces, priority or selector")
        return self

    def to_rule(self) -> TierRule:
        return TierRule(
            name=self.name,
            tier=self.tier,
            namespaces=tuple(self.namespaces or ()),
            min_priority=self.priority.min if self.priority else None,
            max_priority=self.priority.max if self.priority else None,
            selector=self.selector.selector if self.selector else None,
        )

    @classmethod
    def from_rule(cls, rule: TierRule) -> TierRuleSpec:
        priority = None
        if rule.min_priority is not None or rule.max_priority is not None:
            priority = PriorityBand(min=rule.min_priority, max=rule.max_priority)
        selector = None
        if rule.selector is not None:
            selector = LabelSelectorSpec(
                match_labels=dict(rule.selector.match_labels) or None,
                match_expressions=[
                    SelectorRequirement(
                        key=r.key, operator=r.operator.value, values=list(r.values) or None
                    )
                    for r in rule.selector.match_expressions
                ]
                or None,
            )
        return cls(
            name=rule.name,
            tier=rule.tier,
            namespaces=list(rule.namespaces) or None,
            priority=priority,
            selector=selector,
        )


class QosClassDefaults(Section):
    """The tier of a pod no annotation or rule placed, by its Kubernetes QoS class."""

    guaranteed: Tier | None = None
    burstable: Tier | None = None
    best_effort: Tier | None = None


class TiersSpec(Section):
    rules: list[TierRuleSpec] | None = None
    """Classification rules, first match wins; a layer that sets them replaces the list."""
    qos_class_defaults: QosClassDefaults | None = None

    @model_validator(mode="after")
    def _unique_rule_names(self) -> TiersSpec:
        names = [r.name for r in self.rules or ()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule names: {', '.join(duplicates)}")
        return self

    def to_tier_settings(self) -> TierSettings:
        """Only for a complete (resolved) section."""
        d = self.qos_class_defaults
        assert self.rules is not None and d is not None
        assert d.guaranteed and d.burstable and d.best_effort
        return TierSettings(
            rules=tuple(r.to_rule() for r in self.rules),
            fallback=(
                (QOSClass.GUARANTEED, d.guaranteed),
                (QOSClass.BURSTABLE, d.burstable),
                (QOSClass.BEST_EFFORT, d.best_effort),
            ),
        )


# --- reclaim, prediction and the safety margin -----------------------------------------------


class ResourcePercents(Section):
    cpu: Percent | None = None
    memory: Percent | None = None
    gpu: Percent | None = None


class ReservedResources(Section):
    """Kept for node daemons (kubelet, runtime, system) before anything goes to batch; what
    kubelet already keeps outside allocatable for them counts towards it."""

    cpu: CpuQuantity | None = None
    memory: MemoryQuantity | None = None


class ReclaimSpec(Section):
    """`batch = capacity x maxPercent - system - predicted online - margin`, per resource;
    `system = max(reserved, predicted system use) - what kubelet keeps outside allocatable`."""

    max_percent: ResourcePercents | None = None
    """Online and batch together are planned to use at most this share of capacity."""
    reserved: ReservedResources | None = None
    kubelet_eviction_memory: MemoryQuantity | None = None
    """kubelet's hard eviction threshold for memory.available (its default 100Mi): the node
    keeps it free, so it is not counted as memory kubelet keeps for node daemons."""
    memory_margin_percent: Percent | None = None
    """A fixed memory margin beyond maxPercent (memory is not PID-tuned)."""
    stale_after: Duration | None = None
    """Usage readings older than this make the budget degrade."""
    degrade_over: Duration | None = None
    """Once stale, the budget decays linearly to 0 over this long ("0s": at once)."""


class PredictorSpec(Section):
    window: Duration | None = None
    """CPU and GPU demand is the larger of current use and a percentile over this window,
    plus a burst allowance (memory has its own, memoryWindow)."""
    percentile: Percent | None = None
    """The percentile of the window taken as its level (100 = the peak)."""
    burst_factor: float | None = Field(default=None, ge=1)
    """Safety factor on the largest rise above the level seen so far: CPU's and GPU's burst
    allowance."""
    burst_half_life: Duration | None = None
    """The largest rise seen fades by half over this long."""
    cold_start_cpu_percent: Percent | None = None
    """CPU burst allowance of a new node, in percent of its capacity."""
    regime_ratio: float | None = Field(default=None, ge=0)
    """A rise over this many times the largest seen (past the cold start) is a regime change:
    nothing is offered, then the offer recovers over the cold-start time (0 = off)."""
    regime_min_percent: Percent | None = None
    """...and only a rise of more than this percent of capacity."""
    memory_window: Duration | None = None
    """Memory demand never falls below its peak over this window (memory is not
    compressible: a missed rise is an OOM)."""
    memory_burst_factor: float | None = Field(default=None, ge=1)
    """Memory demand is also the current use + this factor x the largest step from one
    reading to the next that took memory above that peak."""
    cold_start_memory_percent: Percent | None = None
    """Memory burst allowance of a new node, in percent of its capacity."""
    cold_start_for: Duration | None = None
    """The CPU cold-start allowance fades linearly to 0 over this long."""
    cold_start_memory_for: Duration | None = None
    """The memory cold-start allowance fades linearly to 0 over this long."""
    cold_start_memory_gap: Duration | None = None
    """coldStartMemoryPercent is for memory readings this far apart; closer readings get
    (gap / this)^0.2 of it, as memory steps less in less time (0s = no scaling)."""


class IndicatorSpec(Atomic):
    """What the margin controller watches on the online tiers, and the value to hold."""

    type: Literal["cpuPressure", "cfsThrottling", "latency"]
    """cpuPressure: online CPU PSI some avg10 (%); cfsThrottling: ratio of throttled
    periods; latency: the number the online service writes to the agent's latency_file."""
    target: float | None = Field(default=None, gt=0)
    """Default 20 (% PSI) or 0.05 (throttled ratio); required for latency, in its unit."""

    @model_validator(mode="after")
    def _latency_needs_target(self) -> IndicatorSpec:
        if self.type == "latency" and self.target is None:
            raise ValueError("the latency indicator needs a target")
        return self


class MarginBounds(Atomic):
    """Bounds of the PID-tuned CPU safety margin, in percent of capacity."""

    min: Percent
    max: Percent

    @model_validator(mode="after")
    def _ordered(self) -> MarginBounds:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class MarginSpec(Section):
    """The PID controller that sizes the CPU margin kept free for online work: above target
    the margin grows at once, below it shrinks slowly. Gains act on the relative error
    (value - target) / target, in fractions of capacity."""

    indicator: IndicatorSpec | None = None
    kp: float | None = Field(default=None, ge=0)
    ki: float | None = Field(default=None, ge=0)
    kd: float | None = Field(default=None, ge=0)
    bounds_percent: MarginBounds | None = None
    initial_percent: Percent | None = None
    """The margin at start, before the controller has seen the indicator."""
    max_step_up_percent: Percent | None = None
    """The margin grows by at most this much of capacity in one decision."""
    shrink_percent_per_second: Percent | None = None
    """...and shrinks by at most this much per second while the indicator is below target."""


# --- isolation, network, GPU -----------------------------------------------------------------


class CpuIsolation(Section):
    suppress: Literal["auto", "quota", "cpuset", "idle-only"] | None = None
    """How batch is held to its CPU budget: auto (the default: cpuset, which hurt online's
    wake-ups least in benchmarks/bench_reaction.py, with and without cpu.idle), a CFS
    quota, confine it to fewer CPUs (cpuset), or not at all (idle-only)."""
    batch_idle: bool | None = None
    """Run batch as SCHED_IDLE (cpu.idle) where the kernel has it."""
    min_batch_cpus: int | None = Field(default=None, ge=1)
    """Fewest CPUs the cpuset mechanism leaves to batch."""
    min_batch_quota: CpuQuantity | None = None
    """Smallest CFS quota the quota mechanism leaves to batch ("100m")."""
    dedicated_cpusets: bool | None = None
    """Give dedicated-tier pods exclusive whole CPUs."""


class MemoryIsolation(Section):
    enabled: bool | None = None
    online_min_percent: Percent | None = None
    """memory.min of online pods, in percent of their memory request."""
    online_low_percent: Percent | None = None
    """memory.low of online pods, in percent of their memory request."""
    batch_high_percent: Percent | None = None
    """memory.high of batch pods, in percent of their memory limit (throttle before OOM)."""


class IoLimits(Section):
    """Batch's io.max on each disk ("0": no limit of that kind)."""

    read_bps: MemoryQuantity | None = None  # bytes, bounded like memory
    """Read bytes per second ("50Mi")."""
    write_bps: MemoryQuantity | None = None
    """Write bytes per second."""
    read_iops: int | None = Field(default=None, ge=0)
    """Read operations per second."""
    write_iops: int | None = Field(default=None, ge=0)
    """Write operations per second."""


class IoIsolation(Section):
    enabled: bool | None = None
    online_weight: int | None = Field(default=None, ge=1, le=10000)
    """io.weight (1-10000, default 100) of online and dedicated pods; on cgroup v1
    blkio.bfq.weight, which only the BFQ scheduler honours."""
    batch_weight: int | None = Field(default=None, ge=1, le=10000)
    """io.weight of the batch tier."""
    batch_max: IoLimits | None = None
    """Batch's io.max (v1: blkio.throttle.*) on each of the devices."""
    devices: list[str] | None = None
    """Block device names as in /sys/block the limits apply to; empty: every disk (not
    loop, ram or zram devices). Their MAJOR:MINOR numbers are read on the node."""


class IsolationSpec(Section):
    cpu: CpuIsolation | None = None
    memory: MemoryIsolation | None = None
    io: IoIsolation | None = None


class ShapingClass(Atomic):
    """One HTB class: guaranteed `rate`, borrowing up to `ceil` (default: the link rate)."""

    rate: Bitrate
    ceil: Bitrate | None = None

    @model_validator(mode="after")
    def _rate_within_ceil(self) -> ShapingClass:
        if self.ceil is not None and parse_bitrate(self.rate) > parse_bitrate(self.ceil):
            raise ValueError(f"rate {self.rate} is above ceil {self.ceil}")
        return self


class NetworkTiers(Section):
    system: ShapingClass | None = None
    online: ShapingClass | None = None
    """Also used by the dedicated tier."""
    batch: ShapingClass | None = None


class NetworkSpec(Section):
    enabled: bool | None = None
    uplink: str | None = Field(default=None, pattern=r"^([^\s/:]{1,15})?$")
    """The node's uplink device; empty: the device of the default route."""
    link_rate: Bitrate | None = None
    """Shape below the true link rate, so the queue forms on this node, not beyond it."""
    tiers: NetworkTiers | None = None
    ingress: bool | None = None
    """Also shape downloads to pods (through an ifb device fed from the pods' devices)."""
    batch_margin: Bitrate | None = None
    """Kept free above online's measured throughput: batch's ceiling is the link rate minus
    what the other tiers send minus this, within batch's rate and ceil."""
    batch_hysteresis: Bitrate | None = None
    """A ceiling change smaller than this is not made (no flapping with each tick's noise)."""
    take_over: bool | None = None
    """Replace a root qdisc or nftables table colocd did not create (default: refuse)."""


class GpuSpec(Section):
    enabled: bool | None = None
    reserve_percent: Percent | None = None
    """GPU time kept free for online beyond its predicted use (the margin's floor)."""
    busy_target_percent: Percent | None = None
    """Per GPU, the busy time (online + batch) the PID-sized margin holds it to."""
    max_margin_percent: Percent | None = None
    """Largest GPU margin, in percent of a GPU."""
    freeze_utilization_percent: Percent | None = None
    """Online SM utilisation of a GPU at or above which its batch pods are frozen."""
    freeze_memory_percent: Percent | None = None
    """Online share of a GPU's memory at or above which its batch pods are frozen."""
    thaw_hysteresis_percent: Percent | None = None
    """Thaw only below the freeze thresholds minus this..."""
    thaw_after: Duration | None = None
    """...held this long ("10s")."""
    max_frozen: Duration | None = None
    """Evict a batch pod frozen this long ("5m")."""


# --- eviction and reporting -------------------------------------------------------------------


class EvictionSpec(Section):
    """The last resort: evict batch under sustained memory pressure or CPU starvation."""

    enabled: bool | None = None
    dry_run: bool | None = None
    """Plan and report evictions, but call no Eviction API."""
    memory_pressure_percent: Percent | None = None
    """Node memory PSI some avg10 (%) at or above which memory counts as under pressure."""
    memory_pressure_hysteresis_percent: Percent | None = None
    memory_usage_percent: Percent | None = None
    """Node working set in percent of capacity at or above which memory is under pressure."""
    memory_usage_hysteresis_percent: Percent | None = None
    sustained_for: Duration | None = None
    """Memory pressure must last this long before the first eviction."""
    cpu_starvation_percent: Percent | None = None
    """Batch is starved while its CPU budget is below this share of its batch-cpu requests."""
    starvation_for: Duration | None = None
    cool_down: Duration | None = None
    """Least time between two evictions."""
    max_evictions: int | None = Field(default=None, ge=0)
    """At most this many evictions per rateWindow."""
    rate_window: Duration | None = None


class NodeResourcesSpec(Section):
    """How often colocd.io/batch-* on the Node are rewritten (API server load)."""

    change_threshold_percent: Percent | None = None
    min_interval: Duration | None = None
    max_interval: Duration | None = None


# --- the whole spec ---------------------------------------------------------------------------


class PolicySettings(Section):
    """Everything a policy can tune; the effective policy of a node has all of it set."""

    tiers: TiersSpec | None = None
    reclaim: ReclaimSpec | None = None
    predictor: PredictorSpec | None = None
    margin: MarginSpec | None = None
    isolation: IsolationSpec | None = None
    network: NetworkSpec | None = None
    gpu: GpuSpec | None = None
    eviction: EvictionSpec | None = None
    node_resources: NodeResourcesSpec | None = None


class WorkloadOverride(Atomic):
    """Put the pods a selector picks into a tier, on every node the policy applies to.

    Overrides come before the tier rules, strongest layer first; the pod annotation
    colocd.io/tier and requests for colocd.io/batch-* still come before them."""

    name: str = Field(min_length=1, max_length=63)
    pod_selector: LabelSelectorSpec
    namespaces: list[str] | None = None
    tier: Tier


Scope = Literal["Cluster", "NodePool", "Node"]


class ColocationPolicySpec(PolicySettings):
    """Cluster: the default for every node (one is expected). NodePool: nodes matching
    nodeSelector, ordered by priority (higher wins) when pools overlap. Node: named nodes."""

    scope: Scope
    node_selector: LabelSelectorSpec | None = None
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    node_names: list[str] | None = None
    workloads: list[WorkloadOverride] | None = None

    @model_validator(mode="after")
    def _scope_fields(self) -> ColocationPolicySpec:
        has = {
            "nodeSelector": self.node_selector is not None,
            "priority": self.priority is not None,
            "nodeNames": bool(self.node_names),
        }
        needs = {
            "Cluster": (),
            "NodePool": ("nodeSelector", "priority"),
            "Node": ("nodeNames",),
        }[self.scope]
        missing = [f for f in needs if not has[f]]
        extra = [f for f, present in has.items() if present and f not in needs]
        if missing:
            raise ValueError(f"scope {self.scope} needs {' and '.join(missing)}")
        if extra:
            raise ValueError(f"scope {self.scope} takes no {' or '.join(extra)}")
        names = [w.name for w in self.workloads or ()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate workload names: {', '.join(duplicates)}")
        return self

    def settings(self) -> PolicySettings:
        """The mergeable part of the spec."""
        return PolicySettings.model_validate(
            {name: getattr(self, name) for name in PolicySettings.model_fields}
        )


class PolicyMeta(StrictNumbers):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    name: DnsSubdomain
    uid: str = ""
    generation: int | None = None
    resource_version: str = Field(default="", alias="resourceVersion")


class ColocationPolicy(StrictNumbers):
    model_config = ConfigDict(extra="ignore", frozen=True)

    api_version: Literal["colocd.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ColocationPolicy"]
    metadata: PolicyMeta
    spec: ColocationPolicySpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- status (written by `colocd policy controller`) -------------------------------------------


class Condition(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = None


class PolicyStatus(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    observed_generation: int | None = None
    matched_nodes: int | None = None
    """How many nodes this policy applies to (its last valid version, if the newest is not)."""
    conditions: list[Condition] | None = None


# --- parsing with readable errors -----------------------------------------------------------

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problems(err: ValidationError) -> tuple[tuple[str, str], ...]:
    """(field path, message) for each problem pydantic found, in document order."""
    found = []
    for e in err.errors(include_url=False):
        message = _MESSAGES.get(e["type"]) or str(e["msg"]).removeprefix("Value error, ")
        found.append((_path(tuple(e["loc"])), message))
    return tuple(found)


def parse_policy(body: object, where: str) -> ColocationPolicy:
    """A validated ColocationPolicy; raises PolicyError naming `where` and the field path.
    `error.problems` lists every (path, message) when there are several."""
    if not isinstance(body, dict):
        raise PolicyError(where, f"expected an object, got {type(body).__name__}")
    try:
        return ColocationPolicy.model_validate(body)
    except ValidationError as err:
        found = problems(err)
        path, message = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise PolicyError(where, message + more, path, found) from None
