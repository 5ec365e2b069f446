"""Benchmarks: each `bench_*.py` prints its figures and writes JSON under `results/`.

Run them all with `make bench`, or one with `python -m benchmarks.bench_effectiveness`.
They need root and real cgroups (v1 here); they are not timed tests.

Errors (one line each, "<action> <target>: <reason>"):

BenchError
 └── TreeError      the kubelet-like cgroup tree could not be built, used or removed
"""

from benchmarks.errors import BenchError, TreeError

__all__ = ["BenchError", "TreeError"]
