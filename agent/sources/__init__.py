"""Where facts come in. In: the API server (pods bound to this node, its Node), a directory of
Pod manifests, trace files. Out: `qos.Pod`s, node facts and samples for the loop.

The Kubernetes adapter (`kube`, `informer`, `backoff`) is the only code that talks to the API
server; `quantity` and `units` parse what people write ("500m", "2Gi", "30s"); `pod_checks`
vets the pods the loop plans with (a UID seen twice, a junk tier annotation).
"""

__all__: list[str] = []
