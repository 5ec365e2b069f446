"""Errors raised by the benchmarks (the tree is drawn in `benchmarks/__init__.py`)."""

from __future__ import annotations


class BenchError(Exception):
    """Root of every error the benchmarks raise."""


class TreeError(BenchError):
    pass
