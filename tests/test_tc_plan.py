"""The planner behind apply: from what a device carries to what is desired, in a safe order
(pure, no kernel needed; the netns tests check the kernel accepts the same plans)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from isolation._tc_tree import (
    PARENT_CLASSID,
    ROOT_HANDLE,
    AddRoot,
    DeleteClass,
    DeleteFilter,
    DeleteRoot,
    DesiredTree,
    HtbClass,
    ObservedTree,
    PodFilter,
    PutClass,
    PutFilter,
    PutLeaf,
    burst_bytes,
    filter_handle,
    handle_str,
    plan,
    quantum_bytes,
)

ONLINE, BATCH, SYSTEM = ROOT_HANDLE | 0x30, ROOT_HANDLE | 0x40, ROOT_HANDLE | 0x10
A, B, C = (IPv4Address(f"10.0.0.{n}") for n in (1, 2, 3))


def htb(rate: int, ceil: int, prio: int = 0, parent: int = PARENT_CLASSID) -> HtbClass:
    return HtbClass(parent, rate, ceil, rate, ceil, prio, quantum_bytes(rate))


PARENT = htb(1000, 1000, parent=ROOT_HANDLE)
CLASSES = {PARENT_CLASSID: PARENT, ONLINE: htb(600, 1000), BATCH: htb(50, 300, prio=1)}
LEAVES = {ONLINE: 262144, BATCH: 262144}
DESIRED = DesiredTree(0x40, CLASSES, LEAVES, {A: ONLINE, B: BATCH})
F1, F2, F3 = filter_handle(1), filter_handle(2), filter_handle(3)
IN_PLACE = ObservedTree(0x40, CLASSES, LEAVES, {F1: PodFilter(A, ONLINE), F2: PodFilter(B, BATCH)})


def observed(**changes) -> ObservedTree:
    return IN_PLACE._replace(**changes)


def desired(**changes) -> DesiredTree:
    return DESIRED._replace(**changes)


CASES = [
    (
        "nothing there: build in order, classes before filters",
        DESIRED,
        None,
        [
            AddRoot(0x40),
            PutClass(PARENT_CLASSID, PARENT, new=True),
            PutClass(ONLINE, CLASSES[ONLINE], new=True),
            PutClass(BATCH, CLASSES[BATCH], new=True),
            PutLeaf(ONLINE, 262144),
            PutLeaf(BATCH, 262144),
            PutFilter(F1, A, ONLINE, new=True),
            PutFilter(F2, B, BATCH, new=True),
        ],
    ),
    ("everything in place: nothing to do", DESIRED, IN_PLACE, []),
    (
        "batch ceil changed: one change-class",
        desired(classes={**CLASSES, BATCH: htb(50, 100, prio=1)}),
        IN_PLACE,
        [PutClass(BATCH, htb(50, 100, prio=1), new=False)],
    ),
    (
        "pod moved to another tier: its filter is rewritten in place",
        desired(routes={A: BATCH, B: BATCH}),
        IN_PLACE,
        [PutFilter(F1, A, BATCH, new=False)],
    ),
    (
        "pod gone: its filter is deleted",
        desired(routes={A: ONLINE}),
        IN_PLACE,
        [DeleteFilter(F2)],
    ),
    (
        "a pod replaces another: the spare filter is reused",
        desired(routes={A: ONLINE, C: BATCH}),
        IN_PLACE,
        [PutFilter(F2, C, BATCH, new=False)],
    ),
    (
        "new pod: the lowest free handle",
        desired(routes={A: ONLINE, B: BATCH, C: ONLINE}),
        observed(filters={F1: PodFilter(A, ONLINE), F3: PodFilter(B, BATCH)}),
        [PutFilter(F2, C, ONLINE, new=True)],
    ),
    (
        "a filter that is not one /32 is not colocd's: removed",
        DESIRED,
        observed(filters={**IN_PLACE.filters, F3: PodFilter(None, BATCH)}),
        [DeleteFilter(F3)],
    ),
    (
        "the same pod twice: the duplicate goes",
        DESIRED,
        observed(filters={**IN_PLACE.filters, F3: PodFilter(A, BATCH)}),
        [DeleteFilter(F3)],
    ),
    (
        "a leaf someone else put there, or another limit, is replaced",
        desired(leaf_limits={ONLINE: 262144, BATCH: 131072}),
        observed(leaf_limits={ONLINE: None, BATCH: 262144}),
        [PutLeaf(ONLINE, 262144), PutLeaf(BATCH, 131072)],
    ),
    (
        "tier dropped: its filters move first, then the class goes",
        desired(
            classes={k: v for k, v in CLASSES.items() if k != ONLINE},
            leaf_limits={BATCH: 262144},
            routes={B: BATCH},
        ),
        IN_PLACE,
        [DeleteFilter(F1), DeleteClass(ONLINE)],
    ),
    (
        "new default tier: HTB cannot change it, so the tree is rebuilt",
        desired(
            default_minor=0x10,
            classes={**CLASSES, SYSTEM: htb(10, 1000)},
            leaf_limits={**LEAVES, SYSTEM: 262144},
        ),
        IN_PLACE,
        [
            DeleteRoot(),
            AddRoot(0x10),
            PutClass(PARENT_CLASSID, PARENT, new=True),
            PutClass(SYSTEM, htb(10, 1000), new=True),
            PutClass(ONLINE, CLASSES[ONLINE], new=True),
            PutClass(BATCH, CLASSES[BATCH], new=True),
            PutLeaf(SYSTEM, 262144),
            PutLeaf(ONLINE, 262144),
            PutLeaf(BATCH, 262144),
            PutFilter(F1, A, ONLINE, new=True),
            PutFilter(F2, B, BATCH, new=True),
        ],
    ),
]


@pytest.mark.parametrize(("case", "want", "have", "ops"), CASES, ids=[c[0] for c in CASES])
def test_plan(case, want, have, ops):
    assert plan(want, have) == ops


def test_stale_child_class_goes_before_its_stale_parent():
    child = ROOT_HANDLE | 0x41
    have = observed(classes={**CLASSES, child: htb(10, 10, parent=SYSTEM), SYSTEM: htb(10, 10)})
    assert plan(DESIRED, have) == [DeleteClass(child), DeleteClass(SYSTEM)]


@pytest.mark.parametrize(
    ("op", "action", "target"),
    [
        (AddRoot(0x40), "add", "qdisc htb c01d:"),
        (PutClass(BATCH, CLASSES[BATCH], new=False), "change", "class c01d:40"),
        (PutLeaf(BATCH, 1), "replace", "qdisc bfifo 40:"),
        (PutFilter(F2, B, BATCH, new=True), "add", "filter 10.0.0.2 → c01d:40"),
        (DeleteFilter(F3), "delete", "filter 800::3"),
    ],
)
def test_operations_describe_themselves_as_tc_would(op, action, target):
    assert op.describe() == (action, target)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(1000, 64 * 1024), (125_000_000, 125_000), (12_500_000, 64 * 1024)],
)
def test_burst_is_at_least_one_gso_packet_and_one_millisecond(rate, burst):
    assert burst_bytes(rate) == burst


def test_handle_str():
    assert handle_str(ROOT_HANDLE) == "c01d:"
    assert handle_str(BATCH) == "c01d:40"
