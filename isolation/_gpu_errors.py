"""Errors raised by GPU readings (`isolation.gpu`), a branch of the isolation error tree.
Each prints as one line: "<action> <target>: <reason>". A machine without NVML is not an
error: it is a state (`GpuMonitor.state.available` is False).

IsolationError               isolation.errors
 └── GpuError
      └── NvmlCallError      an NVML call failed (function, GPU index, NVML code)
           └── GpuLostError  the GPU fell off the bus or needs a reset
"""

from __future__ import annotations

from isolation.errors import IsolationError


class GpuError(IsolationError):
    """Root of every error GPU readings raise."""


class NvmlCallError(GpuError):
    """`action` on `gpu` (None: NVML itself) failed in NVML's `function` with `code`."""

    def __init__(self, action: str, gpu: int | None, function: str, code: int, reason: str):
        target = "NVML" if gpu is None else f"GPU {gpu}"
        super().__init__(f"{action} {target}: {reason} ({function}: NVML error {code})")
        self.action = action
        self.gpu = gpu
        self.function = function
        self.code = code


class GpuLostError(NvmlCallError):
    pass
