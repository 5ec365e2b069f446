"""Errors raised by `qos/`.

QosError
 └── TierAnnotationError   a pod's colocd.io/tier annotation names no tier
"""

from __future__ import annotations


class QosError(Exception):
    """Root of every error `qos/` raises."""


class TierAnnotationError(QosError):
    def __init__(self, pod: str, value: str, message: str) -> None:
        super().__init__(f"classify pod {pod}: {message}")
        self.pod = pod
        self.value = value
