"""A Node's allocatable, and what kubelet keeps outside it (status.capacity less allocatable):
parsed exactly, and a bad or missing capacity credits node daemons nothing rather than fail."""

from __future__ import annotations

from typing import Any

import pytest

from agent.sources.node_info import ALLOCATABLE, parse_node
from qos.state import NodeCapacity

from .objects import node

GIB = 1 << 30
MIB = 1 << 20


def real_node(capacity: Any) -> dict[str, Any]:
    """A node with kube-reserved + system-reserved 1 core and 2Gi, eviction threshold 100Mi."""
    obj = node("n1", cpu="8", memory="32Gi")
    obj["status"]["allocatable"] |= {"cpu": "7", "memory": "30620Mi", "nvidia.com/gpu": "2"}
    obj["status"]["capacity"] = capacity
    return obj


def test_status_capacity_less_allocatable_is_what_kubelet_keeps_outside() -> None:
    info = parse_node(real_node({"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}))
    assert info.allocatable == NodeCapacity(
        cpu_milli=7000,
        memory_bytes=30620 * MIB,
        gpus=2,
        cpu_source=ALLOCATABLE,
        memory_source=ALLOCATABLE,
        cpu_set_aside_milli=1000,
        memory_set_aside_bytes=2 * GIB + 100 * MIB,
    )


def test_fractions_round_towards_crediting_less() -> None:
    obj = node("n1")
    obj["status"]["allocatable"] |= {"cpu": "7999.5m", "memory": "1000.5"}
    obj["status"]["capacity"] |= {"cpu": "8", "memory": "1002"}
    cap = parse_node(obj).allocatable
    assert cap is not None
    assert (cap.cpu_milli, cap.cpu_set_aside_milli) == (7999, 0)  # 0.5m: not a whole millicore
    assert (cap.memory_bytes, cap.memory_set_aside_bytes) == (1000, 1)


@pytest.mark.parametrize(
    ("capacity", "cpu", "memory"),
    [
        (None, 0, 0),  # not reported: unknown, nothing credited
        ({}, 0, 0),
        ("8 cores", 0, 0),  # not a map
        ({"cpu": "8"}, 1000, 0),  # memory missing
        ({"cpu": "lots", "memory": "32Gi"}, 0, 2 * GIB + 100 * MIB),
        ({"cpu": "8", "memory": "32Gb"}, 1000, 0),  # not a quantity
        ({"cpu": ["8"], "memory": True}, 0, 0),  # not strings
        ({"cpu": "1e30", "memory": "99999999999Ei"}, 0, 0),  # beyond any node
        ({"cpu": "6", "memory": "16Gi"}, 0, 0),  # below allocatable
        ({"cpu": "-8", "memory": "-32Gi"}, 0, 0),
    ],
)
def test_a_bad_or_missing_capacity_credits_nothing(capacity: Any, cpu: int, memory: int) -> None:
    cap = parse_node(real_node(capacity)).allocatable
    assert cap is not None and (cap.cpu_milli, cap.memory_bytes) == (7000, 30620 * MIB)
    assert (cap.cpu_set_aside_milli, cap.memory_set_aside_bytes) == (cpu, memory)


def test_a_bad_allocatable_is_still_a_clear_error() -> None:
    obj = real_node({"cpu": "8", "memory": "32Gi"})
    obj["status"]["allocatable"]["memory"] = "32Gb"
    with pytest.raises(ValueError, match="invalid quantity '32Gb'"):
        parse_node(obj)
