"""`IsolationSettings`: the section of colocd's configuration that `isolation/` owns."""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from isolation.errors import UnsafeNameError
from isolation.layout import normalize_cgroup
from qos.strict_numbers import StrictNumbers

__all__ = ["IsolationSettings"]


class IsolationSettings(StrictNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cgroup_root: Path = Field(
        Path("/sys/fs/cgroup"), description="where the cgroup hierarchies are mounted"
    )
    proc_root: Path = Field(Path("/proc"), description="procfs (for mountinfo and own cgroup)")
    kubelet_cgroup_root: str | None = Field(
        None,
        description="kubelet's --cgroup-root, relative to every hierarchy; autodetected if unset",
    )
    state_dir: Path = Field(
        Path("/var/lib/colocd"), description="holds the journal of original cgroup values"
    )
    force_rewrite_s: float = Field(
        60.0, ge=0, description="re-read and rewrite a setting at least this often (0 = always)"
    )
    revert_on_exit: bool = Field(
        False, description="write every journaled original back when the agent stops"
    )

    @field_validator("kubelet_cgroup_root")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_cgroup(value)
        except UnsafeNameError as err:
            raise ValueError(str(err)) from None
