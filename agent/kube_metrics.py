"""Metrics of the Kubernetes side of the agent, declared in one place on an injected registry.

Names follow `colocd_<subsystem>_<name>_<unit>`; every label has a small fixed set of values
(`resource` is one of the watched kinds, `result`/`reason` come from enums in the callers).
Build one `KubeMetrics` per `CollectorRegistry` and hand it to the informers, the node
publisher, the evictor, the event recorder and the policy watcher.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

NAMESPACE = "colocd"


class KubeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(subsystem: str, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(
                name, doc, labels, namespace=NAMESPACE, subsystem=subsystem, registry=registry
            )

        def gauge(subsystem: str, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(
                name, doc, labels, namespace=NAMESPACE, subsystem=subsystem, registry=registry
            )

        # Informers (pods of this node, this node, ColocationPolicies).
        self.informer_objects = gauge(
            "informer", "objects", "Objects in the informer's cache.", ("resource",)
        )
        self.informer_synced = gauge(
            "informer", "synced", "1 once the informer has listed everything.", ("resource",)
        )
        self.informer_connected = gauge(
            "informer",
            "connected",
            "1 while list/watch works; 0 while the cache is served without the API server.",
            ("resource",),
        )
        self.informer_lists = counter(
            "informer",
            "lists",
            "Full listings, by reason (initial, expired on 410 Gone, reconnect).",
            ("resource", "reason"),
        )
        self.informer_events = counter(
            "informer", "events", "Watch events applied to the cache.", ("resource", "type")
        )
        self.informer_errors = counter(
            "informer", "errors", "List/watch failures, by error class.", ("resource", "error")
        )
        self.informer_parse_errors = counter(
            "informer",
            "parse_errors",
            "Objects the informer could not parse (left out of the cache).",
            ("resource",),
        )

        # Node extended resources (colocd.io/batch-*).
        self.node_status_writes = counter(
            "node",
            "status_writes",
            "Node status patches of the batch resources, by trigger and result.",
            ("reason", "result"),
        )
        self.node_status_skips = counter(
            "node",
            "status_skips",
            "Publish calls that wrote nothing, by reason.",
            ("reason",),
        )
        self.node_batch_cpu = gauge(
            "node", "published_batch_cpu_cores", "colocd.io/batch-cpu last written, in cores."
        )
        self.node_batch_memory = gauge(
            "node", "published_batch_memory_bytes", "colocd.io/batch-memory last written."
        )
        self.node_batch_gpu = gauge(
            "node", "published_batch_gpus", "colocd.io/batch-gpu last written, in whole GPUs."
        )

        # Evictions through the Eviction API, and the Events colocd writes.
        self.evictions = counter(
            "eviction",
            "requests",
            "Eviction decisions carried out, by result (evicted, dry_run, blocked, backoff, "
            "gone, failed).",
            ("result",),
        )
        self.events = counter(
            "events",
            "recorded",
            "Kubernetes Events, by type and result (sent, suppressed as a repeat, failed).",
            ("type", "result"),
        )

        # ColocationPolicies.
        self.policy_objects = gauge(
            "policy", "objects", "ColocationPolicy objects seen, by validity.", ("state",)
        )
        self.policy_rejected = counter(
            "policy",
            "rejected",
            "Policy versions rejected as invalid (the last good version stays in force).",
        )
        self.policy_fallback = gauge(
            "policy",
            "effective_fallback",
            "1 while this node runs on its last good effective policy because the newest "
            "resolution is invalid.",
        )
        self.policy_ties = gauge(
            "policy",
            "ties",
            "Fields set differently by policies of equal rank, decided by name order.",
        )
        self.policy_status_writes = counter(
            "policy",
            "status_writes",
            "ColocationPolicy status patches, by result.",
            ("result",),
        )
