"""The Kubernetes side of one node agent, built, started and stopped together for the loop.

    cluster = Cluster(client, node_name, metrics.kube); cluster.start()
    Loop(..., source=cluster, publish=cluster.publish, evict=cluster.evict,
         event=cluster.pod_event, qos=cluster.qos_settings)
    at exit: cluster.stop()

- `snapshot()`: the pods bound to this node (`ApiPodSource`, an informer), reported synced
  only once this node and the ColocationPolicies are listed too, so the first tick already
  runs under the policy in force.
- `publish(plan)`: the plan's budgets as `colocd.io/batch-*` on the Node
  (`NodeResourcePublisher`, which writes only on first sight, real change or refresh).
- `evict(eviction, pod)`: the brain's eviction decisions through the Eviction API
  (`Evictor`, with an Event on the pod).
- `allocatable()`: this Node's `status.allocatable`, the capacity the brain plans with.
- `pod_event(pod, warning, reason, message)`: an Event on a pod (GPU freezes and mapping
  mismatches; a pod the loop planned around: a UID seen twice, a junk colocd.io/tier
  annotation, see `agent.sources.pod_checks`).
- `qos_settings()`: the brain's settings from the ColocationPolicies in force on this node
  (built-in defaults < Cluster < NodePool < Node; `PolicyWatcher`). A resolution the brain
  refuses keeps the last good settings.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from pydantic import ValidationError

from agent.act.events import EventRecorder, EventType, ObjectRef
from agent.act.evictor import EvictionRequest, Evictor
from agent.act.node_resources import BatchCapacity, NodeResourcePublisher
from agent.policy.resolve import Resolution
from agent.policy.watcher import PolicyWatcher
from agent.report.metrics import KubeMetrics
from agent.sources.kube import KubeClient
from agent.sources.node_info import NodeWatcher
from agent.sources.pod_source import ApiPodSource, PodSnapshot
from qos.network import NetworkSettings
from qos.plan import Eviction, Plan
from qos.pod import Pod
from qos.settings import DEFAULT_QOS_SETTINGS, QosSettings
from qos.state import NodeCapacity

__all__ = ["Cluster"]

log = logging.getLogger(__name__)


class Cluster:
    def __init__(self, client: KubeClient, node_name: str, metrics: KubeMetrics) -> None:
        self.client = client
        self.node_name = node_name
        self.pods = ApiPodSource(client, node_name, metrics)
        self.node = NodeWatcher(client, node_name, metrics)
        self.recorder = EventRecorder(client, host=node_name, metrics=metrics)
        self.policies = PolicyWatcher(client, self.node, metrics, self.recorder)
        self.publisher = NodeResourcePublisher(client, node_name, metrics)
        self.evictor = Evictor(client, self.recorder, metrics)
        self._resolution: Resolution | None = None
        self._qos = DEFAULT_QOS_SETTINGS
        self._net_resolution: Resolution | None = None
        self._network = NetworkSettings()  # off until a policy turns it on

    def start(self) -> None:
        for watcher in (self.pods, self.node, self.policies):
            watcher.start()

    def stop(self) -> None:
        for watcher in (self.policies, self.node, self.pods):
            watcher.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        watchers = (self.pods, self.node, self.policies)
        return all(w.wait_synced(max(0.0, deadline - time.monotonic())) for w in watchers)

    def snapshot(self) -> PodSnapshot:
        snap = self.pods.snapshot()
        waiting = [
            what
            for what, w in (("node", self.node), ("policies", self.policies))
            if not w.wait_synced(0)
        ]
        if snap.synced and waiting:
            why = f"waiting for the {' and '.join(waiting)} to be listed"
            return dataclasses.replace(snap, synced=False, problems=(*snap.problems, why))
        return snap

    def allocatable(self) -> NodeCapacity | None:
        """This Node's `status.allocatable` (None until it is known)."""
        info = self.node.info()
        return None if info is None else info.allocatable

    def qos_settings(self) -> QosSettings:
        """The settings of the policy in force (resolved again only when it changes)."""
        resolution = self.policies.current().resolution
        if resolution is self._resolution:
            return self._qos
        self._resolution = resolution
        try:
            self._qos = resolution.qos_settings()
            self.publisher.settings = resolution.publish_settings()
        except (ValidationError, ValueError) as err:
            log.warning("policy for node %s not applied, keeping the last: %s", self.node_name, err)
        return self._qos

    def network_settings(self) -> NetworkSettings:
        """Uplink shaping as the policy in force says (the last valid one on a bad one)."""
        resolution = self.policies.current().resolution
        if resolution is not self._net_resolution:
            self._net_resolution = resolution
            try:
                self._network = resolution.network_settings()
            except ValueError as err:
                log.warning("network policy for %s not applied, keeping the last: %s",
                            self.node_name, err)  # fmt: skip
        return self._network

    def publish(self, plan: Plan) -> None:
        b = plan.budgets
        self.publisher.publish(
            BatchCapacity(b.cpu.amount, b.memory.amount, None if b.gpu is None else b.gpu.amount)
        )

    def pod_event(self, pod: Pod, warning: bool, reason: str, message: str) -> None:
        """An Event on one of this node's pods (GPU freezes, thaws, mapping mismatches)."""
        ref = ObjectRef("v1", "Pod", pod.name, pod.namespace, pod.uid)
        self.recorder.record(
            ref, EventType.WARNING if warning else EventType.NORMAL, reason, message
        )

    def evict(self, eviction: Eviction, pod: Pod | None) -> None:
        if pod is not None:
            request = EvictionRequest.for_pod(pod, eviction.reason)
        else:
            namespace, _, name = eviction.pod.partition("/")
            request = EvictionRequest(namespace, name, eviction.uid, eviction.reason)
        outcome = self.evictor.evict(request, dry_run=eviction.dry_run)
        log.warning("eviction of %s: %s (%s)", request.key, outcome.result.value, outcome.message)
