"""From a Plan to the world. In: a `qos.Plan` and the Topology it applies to. Out: cgroup
writes (`enforce`, through `isolation.executor`), evictions, the Node's extended resources
and Events.
"""

__all__: list[str] = []
