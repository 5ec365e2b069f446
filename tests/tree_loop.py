"""A `Loop` over a lab kubelet-like tree, as the loop tests build it: pods from a manifest
directory (or `source`), the tree's own layout, an executor journaling in `state` (reverting
on `close()` unless `revert_on_exit=False`), the fast path off. Everything else the test
passes goes to `Loop` as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import AgentSettings, FastPathSettings, Settings
from agent.loop import Loop
from agent.sources.pod_source import DirPodSource
from isolation.cgroups import Cgroups
from isolation.executor import Executor
from isolation.settings import IsolationSettings
from lab.kubelet_tree import KubeletTree
from qos.settings import QosSettings
from qos.state import NodeCapacity


def tree_loop(
    tree: KubeletTree,
    pods_dir: Path,
    state: Path,
    brain: QosSettings,
    capacity: NodeCapacity,
    *,
    node_name: str = "test-node",
    agent: dict[str, Any] | None = None,
    revert_on_exit: bool = True,
    **loop: Any,
) -> Loop:
    settings = Settings(
        qos=brain,
        isolation=IsolationSettings(
            state_dir=state, kubelet_cgroup_root=tree.root, revert_on_exit=revert_on_exit
        ),
        agent=AgentSettings(
            node_name=node_name,
            state_dir=state,
            node_cgroup=tree.root,
            fast_path=FastPathSettings(enabled=False),
            **(agent or {}),
        ),
    )
    cgroups = Cgroups(tree.hierarchy)
    loop.setdefault("source", DirPodSource(pods_dir))
    return Loop(
        settings,
        cgroups=cgroups,
        layout=tree.layout,
        capacity=capacity,
        executor=Executor.from_settings(cgroups, settings.isolation),
        **loop,
    )
