"""The built-in layer: what a node gets for every field no ColocationPolicy sets.

Every mergeable field is set here (a test checks it), so a resolved policy is always
complete. Most of it is *derived* from the brain's own defaults (`qos.settings`) and the
node publisher's, so the policy and the code it configures cannot disagree; only traffic
shaping, which no other defaults describe yet, is written out here.
"""

from __future__ import annotations

from agent.act.node_resources import PublishSettings
from agent.policy.model import NetworkSpec, NetworkTiers, ShapingClass
from agent.policy.to_settings import from_settings
from qos.settings import DEFAULT_QOS_SETTINGS

# Shaping is off by default; when enabled without a rate, a 1 Gbit uplink is assumed and
# shaped a little below it so the queue forms on the node.
NETWORK = NetworkSpec(
    enabled=False,
    uplink="",
    link_rate="950Mbit",
    ingress=True,
    batch_margin="50Mbit",
    batch_hysteresis="10Mbit",
    take_over=False,
    tiers=NetworkTiers(
        system=ShapingClass(rate="50Mbit", ceil="950Mbit"),
        online=ShapingClass(rate="700Mbit", ceil="950Mbit"),
        batch=ShapingClass(rate="50Mbit", ceil="200Mbit"),
    ),
)

BUILTIN = from_settings(DEFAULT_QOS_SETTINGS, PublishSettings()).model_copy(
    update={"network": NETWORK}
)
