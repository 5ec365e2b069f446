"""IsolationSettings: the isolation section of colocd's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from isolation.settings import IsolationSettings


def test_defaults() -> None:
    s = IsolationSettings()
    assert s.cgroup_root == Path("/sys/fs/cgroup")
    assert s.kubelet_cgroup_root is None
    assert (s.force_rewrite_s, s.revert_on_exit) == (60.0, False)


def test_kubelet_root_is_normalized() -> None:
    assert IsolationSettings(kubelet_cgroup_root="/kube.slice/").kubelet_cgroup_root == "kube.slice"


@pytest.mark.parametrize(
    "fields",
    [
        {"kubelet_cgroup_root": "/a/../../etc"},
        {"force_rewrite_s": -1},
        {"cgroup_rot": "/sys/fs/cgroup"},  # a typo is an error, not ignored
    ],
)
def test_bad_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IsolationSettings(**fields)  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        IsolationSettings().revert_on_exit = True  # type: ignore[misc]
