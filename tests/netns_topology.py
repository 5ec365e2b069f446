"""A private node topology of network namespaces, and iperf3 traffic through it.

    [online] eth0 10.99.1.2 ── on0 10.99.1.1 ┐
                                             [node] up0 10.99.0.1 ── eth0 10.99.0.2 [peer]
    [batch]  eth0 10.99.2.2 ── ba0 10.99.2.1 ┘

With `wire_mbit`, a "wire" namespace sits between node and peer and holds a tbf in each
direction: the true link, slower than veth, with a switch's buffer, so that a queue can form
beyond the node (peer is then 10.99.3.2). Every namespace has a random suffix and every veth is
created inside a namespace: nothing touches the root namespace, and parallel runs do not
collide (addresses repeat, but each namespace has its own stack). `close()` stops only the
processes this object started, by PID, then deletes its namespaces.

Variants of the plain (wire-less) topology: `ipv6` adds fd99:N::/64 beside each 10.99.N.0/24;
`masquerade` SNATs everything leaving up0 to the node's address (nftables `ip nat`); `vxlan`
puts an overlay between node and peer (vx0, VNI 42, 10.98.0.1 <-> 10.98.0.2 over up0) that
the pod traffic takes, so the uplink sees only the outer UDP packets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

ONLINE_IP = IPv4Address("10.99.1.2")
BATCH_IP = IPv4Address("10.99.2.2")
ONLINE_IP6 = IPv6Address("fd99:1::2")
BATCH_IP6 = IPv6Address("fd99:2::2")
PEER_IP6 = IPv6Address("fd99::2")
UPLINK = "up0"
IFB = "ifbup0"


def netns_unavailable() -> str | None:
    """Why netns tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc)"
    for tool in ("ip", "tc", "iperf3"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt: iproute2 iperf3)"
    return None


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass
class Topology:
    wire_mbit: int | None = None
    ipv6: bool = False
    masquerade: bool = False
    vxlan: bool = False
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _made: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"colocd-{role}-{self.suffix}"

    @property
    def node(self) -> str:
        return self.ns("node")

    @property
    def peer_ip(self) -> IPv4Address:
        if self.vxlan:
            return IPv4Address("10.98.0.2")
        return IPv4Address("10.99.3.2" if self.wire_mbit else "10.99.0.2")

    def up(self) -> Topology:
        """Build the topology; if any step fails, remove what was built and re-raise."""
        try:
            return self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> Topology:
        roles = ["node", "peer", "online", "batch"] + (["wire"] if self.wire_mbit else [])
        for role in roles:
            _sh("ip", "netns", "add", self.ns(role))
            self._made.append(self.ns(role))
            _sh("ip", "-n", self.ns(role), "link", "set", "lo", "up")
            if self.ipv6:
                dad = ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
                _sh("ip", "netns", "exec", self.ns(role), "sysctl", "-qw", *dad)
        node = self.node
        for dev, pod, subnet in (("on0", "online", 1), ("ba0", "batch", 2)):
            pod_ns = self.ns(pod)
            self._link(
                (node, dev, f"10.99.{subnet}.1/24"), (pod_ns, "eth0", f"10.99.{subnet}.2/24")
            )
            _sh("ip", "-n", pod_ns, "route", "add", "default", "via", f"10.99.{subnet}.1")
            if self.ipv6:
                _sh("ip", "-n", node, "addr", "add", f"fd99:{subnet}::1/64", "dev", dev, "nodad")
                _sh("ip", "-n", pod_ns, "addr", "add", f"fd99:{subnet}::2/64", "dev", "eth0",
                    "nodad")  # fmt: skip
                _sh("ip", "-n", pod_ns, "-6", "route", "add", "default", "via", f"fd99:{subnet}::1")
        _sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if self.ipv6:
            _sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        peer = self.ns("peer")
        if self.wire_mbit is None:
            self._link((node, UPLINK, "10.99.0.1/24"), (peer, "eth0", "10.99.0.2/24"))
            _sh("ip", "-n", node, "route", "add", "default", "via", "10.99.0.2")
            _sh("ip", "-n", peer, "route", "add", "10.99.0.0/16", "via", "10.99.0.1")
            if self.ipv6:
                _sh("ip", "-n", node, "addr", "add", "fd99::1/64", "dev", UPLINK, "nodad")
                _sh("ip", "-n", peer, "addr", "add", "fd99::2/64", "dev", "eth0", "nodad")
                _sh("ip", "-n", node, "-6", "route", "add", "default", "via", "fd99::2")
                _sh("ip", "-n", peer, "-6", "route", "add", "fd99::/16", "via", "fd99::1")
            if self.masquerade:
                self._masquerade()
            if self.vxlan:
                for ns, local, remote, ip in ((node, "1", "2", "10.98.0.1/24"),
                                              (peer, "2", "1", "10.98.0.2/24")):  # fmt: skip
                    dev = UPLINK if ns == node else "eth0"
                    _sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42",
                        "local", f"10.99.0.{local}", "remote", f"10.99.0.{remote}",
                        "dstport", "4789", "dev", dev)  # fmt: skip
                    _sh("ip", "-n", ns, "addr", "add", ip, "dev", "vx0")
                    _sh("ip", "-n", ns, "link", "set", "vx0", "up")
                for subnet in ("10.99.1.0/24", "10.99.2.0/24"):
                    _sh("ip", "-n", peer, "route", "add", subnet, "via", "10.98.0.1")
            return self
        wire = self.ns("wire")
        self._link((node, UPLINK, "10.99.0.1/24"), (wire, "w0", "10.99.0.2/24"))
        self._link((wire, "w1", "10.99.3.1/24"), (peer, "eth0", "10.99.3.2/24"))
        _sh("ip", "netns", "exec", wire, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _sh("ip", "-n", node, "route", "add", "default", "via", "10.99.0.2")
        _sh("ip", "-n", wire, "route", "add", "10.99.0.0/16", "via", "10.99.0.1")
        _sh("ip", "-n", peer, "route", "add", "default", "via", "10.99.3.1")
        if self.masquerade:
            self._masquerade()
        # The true link: the rate, plus a switch's buffer of 50 ms where a queue can stand.
        for dev in ("w0", "w1"):
            _sh("tc", "-n", wire, "qdisc", "add", "dev", dev, "root", "tbf",
                "rate", f"{self.wire_mbit}mbit", "burst", "64kb", "latency", "50ms")  # fmt: skip
        return self

    def _masquerade(self) -> None:
        """SNAT everything leaving the uplink to the node's address (nftables `ip nat`)."""
        nat = (
            "table ip nat {\n chain post {\n type nat hook postrouting priority srcnat;\n"
            f' oifname "{UPLINK}" masquerade\n }}\n}}\n'
        )
        subprocess.run(["ip", "netns", "exec", self.node, "nft", "-f", "-"], input=nat,
                       text=True, check=True, capture_output=True)  # fmt: skip

    @staticmethod
    def _link(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
        """A veth pair between two (namespace, device, address) ends."""
        _sh("ip", "-n", a[0], "link", "add", a[1], "type", "veth", "peer", "name", b[1],
            "netns", b[0])  # fmt: skip
        for ns, dev, ip in (a, b):
            _sh("ip", "-n", ns, "addr", "add", ip, "dev", dev)
            _sh("ip", "-n", ns, "link", "set", dev, "up")

    def links(self, role: str) -> list[str]:
        out = _sh("ip", "-n", self.ns(role), "-br", "link")
        return [line.split()[0].split("@")[0] for line in out.splitlines()]

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._procs.clear()
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self._made.clear()

    def __enter__(self) -> Topology:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- processes -----------------------------------------------------------------------

    def spawn(self, role: str, *argv: str) -> subprocess.Popen:
        """Start `argv` inside namespace `role` (`ip netns exec` execs, so the PID is the
        program's own)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._procs.append(proc)
        return proc

    def tc(self, role: str, *argv: str) -> str:
        return _sh("tc", "-n", self.ns(role), *argv)

    def wait_for_port(self, role: str, port: int, proto: str = "tcp") -> None:
        """Wait until something in `role` listens on `port` ("tcp" or "udp")."""
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _sh("ip", "netns", "exec", self.ns(role), "ss", flag, f"sport = :{port}").strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing in {role} listens on {proto} port {port}")

    def iperf_server(self, role: str, port: int) -> subprocess.Popen:
        """A one-off iperf3 server in `role`, once it listens."""
        proc = self.spawn(role, "iperf3", "-s", "-1", "-p", str(port))
        self.wait_for_port(role, port)
        return proc

    def iperf_client(
        self,
        role: str,
        server: IPv4Address,
        port: int,
        seconds: float,
        *extra: str,
    ) -> subprocess.Popen:
        return self.spawn(
            role, "iperf3", "-c", str(server), "-p", str(port), "-t", str(seconds),
            "-i", "0.5", "-J", *extra,
        )  # fmt: skip


@dataclass(frozen=True)
class IperfResult:
    mbit: float  # what the receiver got over the whole run
    intervals: tuple[tuple[float, float], ...]  # (start s, Mbit/s) per interval

    def mean_between(self, start: float, end: float) -> float:
        picked = [m for t, m in self.intervals if start <= t < end]
        return sum(picked) / len(picked)


def iperf_result(proc: subprocess.Popen, timeout: float) -> IperfResult:
    out, err = proc.communicate(timeout=timeout)
    data = json.loads(out)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']} {err.strip()}")
    end = data["end"]
    received = end.get("sum_received") or end["sum"]
    return IperfResult(
        mbit=received["bits_per_second"] / 1e6,
        intervals=tuple(
            (i["sum"]["start"], i["sum"]["bits_per_second"] / 1e6) for i in data["intervals"]
        ),
    )
