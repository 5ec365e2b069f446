"""Online latency and throughput next to batch traffic, without and with colocd's shaping.

Run as root from the repository root (not a timed test):

    .venv/bin/python -m benchmarks.bench_network [--link-mbit 500] [--seconds 3] [--repeats 3]

Prints a table and writes benchmarks/results/network.json.

The topology (tests/netns_topology.py) puts online and batch pods behind a node whose uplink
crosses a "wire" namespace: a tbf at --link-mbit with a 50 ms switch buffer, the true
bottleneck. Each run gets a fresh topology; the scenarios are interleaved, and each figure
is the median of --repeats runs (this machine is shared). While batch runs 4 TCP streams (upload, or
download for the ingress rows), online is measured twice: its round trip to the peer (a UDP
probe every 10 ms; probe and echo server at real-time priority, so that the figure is the
network path's queues and not CPU scheduling) and its throughput (one TCP stream paced at
30 % of the link).

Shaping: root at 90 % of the link (headroom, so the node owns the bottleneck); online rate
60 %, prio 0; batch rate 5 %, prio 1; both may borrow up to the root. The "root above link"
row sets the root at 110 %, to show why the headroom matters.

Three ways of shaping are compared: none; the static HTB (isolation.network applied once,
pods classified by source IP with u32 on the uplink); and the running agent (`colocd run
--pods DIR` in the node namespace, pods declaring their IPs, tier marks in nftables, batch
ceiling = link - measured online - margin; downloads marked by destination pod and shaped
on the ifb fed from the pods' devices). The SNAT rows masquerade pod traffic to the node's
address on the uplink, where an IP filter no longer sees the pod (uploads) or sees only the
node's address (downloads, before de-NAT).

Then the cost of reconciling 250 pods' classification (benchmarks/_reconcile_probe.py, in a
fresh namespace): marks (nftables sets) and the HTB tree, first apply, no-op, one pod out
and one in, and a batch ceiling change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from benchmarks._tree import build_tree
from isolation.network import TierShaping, UplinkShaper, UplinkShaping
from qos.pod import Container, Pod, Resources
from qos.tiers import Tier
from tests.netns_topology import (
    BATCH_IP,
    IFB,
    ONLINE_IP,
    UPLINK,
    Topology,
    iperf_result,
    netns_unavailable,
)

RESULTS = Path(__file__).parent / "results" / "network.json"
PROBE = Path(__file__).with_name("_rtt_probe.py")
PROBE_PORT, ONLINE_PORT, BATCH_PORT = 7000, 5201, 5202
BATCH_STREAMS = 4
ONLINE_SHARE = 0.3
RAMP_S = 1.0  # batch fills the queues before online is measured

RECONCILE = Path(__file__).with_name("_reconcile_probe.py")
RECONCILE_PODS = 250


class Scenario(NamedTuple):
    name: str
    batch: str | None  # batch direction, None: online alone
    shaping: str | None  # None, "static" (HTB applied once) or "agent" (colocd run)
    root_share: float = 0.9  # the root rate as a share of the link
    snat: bool = False


SCENARIOS = [
    Scenario("online alone", None, None),
    Scenario("batch upload, no shaping", "upload", None),
    Scenario("batch upload, static HTB", "upload", "static"),
    Scenario("batch upload, static HTB root above link", "upload", "static", 1.1),
    Scenario("batch upload, colocd agent", "upload", "agent"),
    Scenario("batch upload SNAT, static HTB (u32 blind)", "upload", "static", snat=True),
    Scenario("batch upload SNAT, colocd agent", "upload", "agent", snat=True),
    Scenario("batch download, no shaping", "download", None),
    Scenario("batch download, static HTB (ifb)", "download", "static"),
    Scenario("batch download, colocd agent (ifb)", "download", "agent"),
    Scenario("batch download SNAT, static HTB (u32 blind)", "download", "static", snat=True),
    Scenario("batch download SNAT, colocd agent (ifb)", "download", "agent", snat=True),
]


def shaping(link_bps: int, root_share: float) -> UplinkShaping:
    root = int(link_bps * root_share)
    return UplinkShaping(
        uplink=UPLINK,
        ifb=IFB,
        root_rate_bps=root,
        default_tier=Tier.BATCH,
        tiers=(
            TierShaping(Tier.SYSTEM, int(link_bps * 0.02), root, 0),
            TierShaping(Tier.ONLINE, int(link_bps * 0.6), root, 0, frozenset({ONLINE_IP})),
            TierShaping(Tier.BATCH, int(link_bps * 0.05), root, 1, frozenset({BATCH_IP})),
        ),
    )


def start_batch(topo: Topology, direction: str, seconds: float):
    topo.iperf_server("peer", BATCH_PORT)
    extra = ["-P", str(BATCH_STREAMS)] + (["-R"] if direction == "download" else [])
    return topo.iperf_client("batch", topo.peer_ip, BATCH_PORT, seconds, *extra)


def online_rtt(topo: Topology, seconds: float) -> dict:
    probe = topo.spawn(
        "online", sys.executable, str(PROBE), "client", str(topo.peer_ip), str(PROBE_PORT),
        str(seconds), "--rt",
    )  # fmt: skip
    out, err = probe.communicate(timeout=seconds + 10)
    if probe.returncode != 0:
        raise RuntimeError(f"rtt probe failed: {err.strip()}")
    return json.loads(out)


def online_stream(topo: Topology, seconds: float, mbit: float, download: bool) -> float:
    topo.iperf_server("peer", ONLINE_PORT)
    extra = ["-b", f"{mbit:.0f}M"] + (["-R"] if download else [])
    client = topo.iperf_client("online", topo.peer_ip, ONLINE_PORT, seconds, *extra)
    return iperf_result(client, seconds + 15).mbit


def _mbit(bps: float) -> str:
    return f"{bps / 1e6:.0f}Mbit"


@contextlib.contextmanager
def running_agent(topo: Topology, link_bps: int) -> Iterator[None]:
    """`colocd run --pods DIR` in the node namespace, the same shares as `shaping`, with
    the online and batch pods' manifests declaring their IPs; stopped (reverting) after."""
    root = int(link_bps * 0.9)
    online = Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal(1)})),))
    batch = Pod("jobs", "flood", containers=(Container("loop"),))
    with tempfile.TemporaryDirectory(prefix="colocd-bench-") as tmp, build_tree(
        [online, batch], 2000, 2 * 2**30
    ) as tree:  # fmt: skip
        pods, state = Path(tmp) / "pods", Path(tmp) / "state"
        pods.mkdir()
        for pod, ip in ((online, ONLINE_IP), (batch, BATCH_IP)):
            manifest = tree.kubelet_tree.manifest(tree.kubelet_tree.pods[tree_uid(tree, pod)])
            manifest.setdefault("status", {})["podIPs"] = [{"ip": str(ip)}]
            (pods / f"{pod.name}.json").write_text(json.dumps(manifest))
        network = {
            "enabled": True, "uplink": UPLINK, "linkRate": _mbit(root), "ingress": True,
            "batchMargin": _mbit(link_bps * 0.05), "batchHysteresis": _mbit(link_bps * 0.02),
            "tiers": {
                "system": {"rate": _mbit(link_bps * 0.02)},
                "online": {"rate": _mbit(link_bps * 0.6)},
                "batch": {"rate": _mbit(link_bps * 0.05), "ceil": _mbit(root)},
            },
        }  # fmt: skip
        config = Path(tmp) / "colocd.json"
        config.write_text(json.dumps({"agent": {"node_cgroup": tree.top}, "network": network}))
        argv = [
            "nsenter", f"--net=/var/run/netns/{topo.node}", sys.executable, "-m", "agent.cli",
            "run", "--pods", str(pods), "--kubelet-cgroup-root", tree.top, "--config",
            str(config), "--state-dir", str(state), "--revert-on-exit", "--no-fast-path",
        ]  # fmt: skip
        agent = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            # The ifb's tree is built last but one; the marks follow in the same tick.
            while "htb c01e: dev colocd-ifb0" not in topo.tc("node", "qdisc", "show"):
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the agent did not shape: {agent.stderr.read()[-2000:]}")
                time.sleep(0.2)
            time.sleep(0.5)
            yield
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.communicate(timeout=30)


def tree_uid(tree, pod: Pod) -> str:
    return next(uid for uid, p in tree.kubelet_tree.pods.items() if p.name == pod.name)


def scenario(sc: Scenario, args) -> dict:
    link_bps = args.link_mbit * 1_000_000
    row: dict = {"name": sc.name, "batch": sc.batch, "root_mbit": None}
    with (
        Topology(wire_mbit=args.link_mbit, masquerade=sc.snat) as topo,
        contextlib.ExitStack() as stack,
    ):
        if sc.shaping == "static":
            spec = shaping(link_bps, sc.root_share)
            row["root_mbit"] = spec.root_rate_bps / 1e6
            with UplinkShaper(netns=topo.node) as shaper:
                shaper.apply(spec)
        elif sc.shaping == "agent":
            row["root_mbit"] = link_bps * sc.root_share / 1e6
            stack.enter_context(running_agent(topo, link_bps))
        batch = sc.batch
        topo.spawn("peer", sys.executable, str(PROBE), "server", str(PROBE_PORT), "--rt")
        topo.wait_for_port("peer", PROBE_PORT, "udp")
        target = args.link_mbit * ONLINE_SHARE
        runs = {}
        for phase in ("rtt", "stream"):
            flood = None
            if batch is not None:
                flood = start_batch(topo, batch, args.seconds + RAMP_S + 1)
                time.sleep(RAMP_S)
            if phase == "rtt":
                row["online_rtt_ms"] = online_rtt(topo, args.seconds)
            else:
                download = batch == "download"
                row["online_mbit"] = online_stream(topo, args.seconds, target, download)
                row["online_target_mbit"] = target
            if flood is not None:
                runs[phase] = iperf_result(flood, args.seconds + 20).mbit
        row["batch_mbit"] = runs or None
    return row


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarise(name: str, runs: list[dict]) -> dict:
    """Medians over the repeats of one scenario."""
    batch = [r["batch_mbit"]["stream"] for r in runs if r["batch_mbit"]]
    return {
        "name": name,
        "online_rtt_p50_ms": median([r["online_rtt_ms"]["p50_ms"] for r in runs]),
        "online_rtt_p99_ms": median([r["online_rtt_ms"]["p99_ms"] for r in runs]),
        "online_rtt_max_ms": median([r["online_rtt_ms"]["max_ms"] for r in runs]),
        "online_mbit": median([r["online_mbit"] for r in runs]),
        "online_target_mbit": runs[0]["online_target_mbit"],
        "batch_mbit": median(batch) if batch else None,
        "root_mbit": runs[0]["root_mbit"],
    }


def show(summary: list[dict], repeats: int) -> None:
    head = f"{'scenario':40} {'rtt p50':>8} {'p99':>8} {'max':>8} {'online':>8} {'batch':>8}"
    print(head)
    print("-" * len(head))
    for r in summary:
        batch = "-" if r["batch_mbit"] is None else f"{r['batch_mbit']:.1f}"
        print(
            f"{r['name']:40} {r['online_rtt_p50_ms']:>8.2f} {r['online_rtt_p99_ms']:>8.2f}"
            f" {r['online_rtt_max_ms']:>8.2f} {r['online_mbit']:>8.1f} {batch:>8}"
        )
    print(
        f"medians of {repeats} runs; rtt in ms (UDP probe every 10 ms, online pod → peer);"
        " online (paced TCP) and batch in Mbit/s"
    )


def reconcile_cost(repeats: int) -> dict:
    """The 250-pod reconcile probe, in a namespace of its own."""
    ns = f"colocd-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(RECONCILE), str(RECONCILE_PODS),
             str(repeats)],
            check=True, capture_output=True, text=True, timeout=600,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return json.loads(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link-mbit", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    why = netns_unavailable()
    if why is not None:
        print(f"bench_network: cannot run: {why}", file=sys.stderr)
        return 1
    runs: dict[str, list[dict]] = {sc.name: [] for sc in SCENARIOS}
    for round_ in range(1, args.repeats + 1):
        for sc in SCENARIOS:
            runs[sc.name].append(scenario(sc, args))
            print(f"round {round_}/{args.repeats} done: {sc.name}", file=sys.stderr)
    summary = [summarise(sc.name, runs[sc.name]) for sc in SCENARIOS]
    show(summary, args.repeats)
    reconcile = reconcile_cost(args.repeats)
    print(f"reconciling {RECONCILE_PODS} pods' classification (wall / CPU ms, medians):")
    for step, cost in reconcile["steps"].items():
        print(f"  {step:58} {cost['wall_ms']:>8.1f} {cost['cpu_ms']:>8.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "network",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "link_mbit": args.link_mbit,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "batch_streams": BATCH_STREAMS,
        "summary": summary,
        "reconcile": reconcile,
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
