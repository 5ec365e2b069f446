"""Property tests: classification never raises on well-typed pods, and the QoS class does
not depend on container order or on how a quantity is spelled."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sources.quantity import parse_quantity
from qos.k8s_qos import compute_qos_class
from qos.pod import Container, Pod, Resources
from qos.state import NodeCapacity, NodeState
from qos.tiers import classify

RESOURCE_NAMES = st.sampled_from(
    ["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu", "colocd.io/batch-cpu"]
)
# (amount, spellings that Kubernetes treats as the same quantity)
CPU_SPELLINGS = [("0", "0m"), ("1", "1000m"), ("2", "2000m"), ("0.5", "500m"), ("0.1", "100m")]
MEM_SPELLINGS = [("1Gi", "1073741824"), ("1Ki", "1024"), ("1k", "1000"), ("0", "0Mi")]


@st.composite
def spelled(draw, name):
    table = CPU_SPELLINGS if name == "cpu" else MEM_SPELLINGS
    return draw(st.sampled_from(table))


@st.composite
def resource_lists(draw):
    names = draw(st.lists(RESOURCE_NAMES, unique=True, max_size=4))
    out = {}
    for n in names:
        if n in ("cpu", "memory"):
            out[n] = draw(spelled(n))
        else:
            q = str(draw(st.integers(0, 8)))
            out[n] = (q, q)
    return out


@st.composite
def containers(draw, sidecar_allowed=False):
    requests = draw(resource_lists())
    limits = draw(resource_lists())
    policy = draw(st.sampled_from([None, "Always"])) if sidecar_allowed else None
    name = draw(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True))
    return name, requests, limits, policy


def build(specs, variant: int) -> tuple[Container, ...]:
    return tuple(
        Container(
            name,
            Resources(
                requests={k: parse_quantity(v[variant]) for k, v in req.items()},
                limits={k: parse_quantity(v[variant]) for k, v in lim.items()},
            ),
            policy,
        )
        for name, req, lim, policy in specs
    )


@st.composite
def pod_specs(draw):
    apps = draw(st.lists(containers(), min_size=1, max_size=4))
    inits = draw(st.lists(containers(sidecar_allowed=True), max_size=3))
    return apps, inits


@settings(max_examples=300, deadline=None)
@given(pod_specs(), st.randoms(use_true_random=False), st.integers(-5, 2**31 - 1) | st.none())
def test_qos_class_is_invariant_and_classification_never_raises(spec, rnd, priority):
    apps, inits = spec
    first = Pod("ns", "p", containers=build(apps, 0), init_containers=build(inits, 0))
    shuffled = list(apps)
    rnd.shuffle(shuffled)
    respelled = Pod(
        "ns",
        "p",
        containers=build(shuffled, 1),
        init_containers=build(inits, 1),
        priority=priority,
    )
    assert compute_qos_class(first) is compute_qos_class(respelled)
    decision = classify(respelled)
    assert decision.reason
    state = NodeState.build("n", NodeCapacity(4000, 8 << 30), [first, respelled])
    assert all(p.requests.cpu_milli >= 0 for p in state.pods)


@given(st.sampled_from(CPU_SPELLINGS + MEM_SPELLINGS))
def test_spellings_parse_equal(pair):
    a, b = pair
    assert parse_quantity(a) == parse_quantity(b)
    assert isinstance(parse_quantity(a), Decimal)
