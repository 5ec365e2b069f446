"""ColocationPolicy: the model (once, in pydantic), its CRD, layering with provenance, and the
watchers that keep the last good policy in force.

Modules: `model` (spec and parsing), `defaults` (the built-in layer), `resolve` (merge with
provenance), `crd` (CRD generated from the model), `load` (files), `tracker` (last good of
everything), `watcher` (the agent's view), `status` (the controller that writes status),
`to_settings` (effective policy -> `qos.QosSettings` and the node publisher's settings).
"""

from agent.policy.load import LoadedPolicy, PolicyLoad, load_policies
from agent.policy.model import ColocationPolicy, ColocationPolicySpec, PolicySettings, parse_policy
from agent.policy.resolve import Layer, Resolution, Source, Tie, resolve
from agent.policy.to_settings import to_publish_settings, to_qos_settings
from agent.policy.tracker import NodePolicy, PolicyDocument, PolicyTracker
from agent.policy.watcher import PolicyWatcher

__all__ = [
    "ColocationPolicy",
    "ColocationPolicySpec",
    "Layer",
    "LoadedPolicy",
    "NodePolicy",
    "PolicyDocument",
    "PolicyLoad",
    "PolicySettings",
    "PolicyTracker",
    "PolicyWatcher",
    "Resolution",
    "Source",
    "Tie",
    "load_policies",
    "parse_policy",
    "resolve",
    "to_publish_settings",
    "to_qos_settings",
]
