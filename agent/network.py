"""The network side of the tick, wired: read the tier classes' counters (agent.observe),
decide rates and the batch ceiling (qos.network, pure), apply them (agent.act.shaping), and
report. The loop calls `tick` once per tick with the pods and their tiers, and `close` when
it stops.

Failing towards online: an error from the kernel or a foreign qdisc/table is reported on
every tick (a note and `colocd_network_shaping_active` 0) and tried again next tick; the
batch ceiling without a reading is batch's guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from agent.act.shaping import NetworkActuator
from agent.observe.network import TrafficMeter
from agent.report.metrics import AgentMetrics
from isolation.errors import IsolationError
from qos.network import NetworkPlan, NetworkSettings, NetworkState, plan_network
from qos.state import NodeState
from qos.tiers import Tier

__all__ = ["NetworkSide"]

log = logging.getLogger(__name__)


class NetworkSide:
    def __init__(
        self,
        settings: NetworkSettings,
        state_dir: Path,
        *,
        dry_run: bool,
        clock: Callable[[], float],
        metrics: AgentMetrics | None = None,
        source: Callable[[], NetworkSettings] | None = None,
    ) -> None:
        """`source`: the settings in force, asked each tick (the policies on Kubernetes);
        without it `settings` hold for good."""
        self.settings = settings
        self.source = source
        self.actuator = NetworkActuator(settings, state_dir, dry_run, clock)
        self.metrics = metrics
        self.state = NetworkState()
        self.plan: NetworkPlan | None = None
        self.meter = TrafficMeter(self._counters, clock)
        self._last_counters: dict[tuple[Tier, str], tuple[int, int]] = {}
        self.error: str | None = None
        self._logged: list[tuple[int, int]] = []  # the rates last logged with their reasons
        for line in self.actuator.recover():
            log.warning("network: removed what an earlier run left (crash?): %s", line)

    def _counters(self):
        return () if self.plan is None else self.actuator.traffic(self.plan)

    def tick(self, node: NodeState) -> list[str]:
        """Shape for these pods; returns notes (one line each) for the tick's report."""
        if self.source is not None:
            settings = self.source()
            if settings != self.settings:
                self._reconfigure(settings)
        if not self.settings.enabled:
            return []
        reading = self.meter.sample()
        pods = [(p.pod, p.tier) for p in node.pods]
        plan, self.state = plan_network(self.settings, pods, reading.non_batch_bps, self.state)
        self.plan = plan
        applied = self.actuator.apply(plan)
        self.error = applied.error
        notes = []
        if applied.error is not None:
            notes.append(f"network: {applied.error}")
            log.error("network shaping not in force: %s", applied.error)
        if plan.host_network:
            notes.append(
                f"network: {len(plan.host_network)} host-network pods share the node's "
                "address and go to the system class"
            )
        reasons = [r.reason for r in plan.rates]
        if self.actuator.dry_run:
            notes += [f"network (dry run): {why}" for why in reasons]
        elif [(r.rate_bps, r.ceil_bps) for r in plan.rates] != self._logged:
            self._logged = [(r.rate_bps, r.ceil_bps) for r in plan.rates]
            for why in reasons:
                log.info("network: %s", why)
        if self.metrics is not None:
            self.metrics.network(plan, self._deltas(reading.counters), applied.error is None)
        return notes

    def _reconfigure(self, settings: NetworkSettings) -> None:
        try:
            for line in self.actuator.reconfigure(settings):
                log.info("network: %s (settings changed)", line)
        except IsolationError as err:  # tried again at the next apply or revert
            log.error("network: remove shaping: %s", err)
        self.settings = settings
        self.state = NetworkState()
        self.plan = None
        if self.metrics is not None and not settings.enabled:
            self.metrics.net_active.set(0)

    def _deltas(self, counters) -> list[tuple[Tier, str, int, int]]:
        out = []
        for c in counters:
            if c.sent_bytes is None or c.dropped_packets is None:
                continue
            key = (c.tier, c.direction)
            old = self._last_counters.get(key)
            now = (c.sent_bytes, c.dropped_packets)
            self._last_counters[key] = now
            if old is not None and now[0] >= old[0] and now[1] >= old[1]:
                out.append((c.tier, c.direction, now[0] - old[0], now[1] - old[1]))
            elif old is not None:  # the class was rebuilt: count from zero
                out.append((c.tier, c.direction, now[0], now[1]))
        return out

    def close(self, revert: bool) -> list[str]:
        return self.actuator.close(revert)
