"""UDP round-trip probe, run inside a network namespace by bench_network.

_rtt_probe.py server PORT               echo every datagram back
_rtt_probe.py client HOST PORT SECONDS  one probe every 10 ms; prints JSON percentiles (ms)
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

INTERVAL_S = 0.010
TIMEOUT_S = 1.0
PROBE = struct.Struct("!Qd")  # sequence number, send time


def serve(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        while True:
            data, peer = sock.recvfrom(2048)
            sock.sendto(data, peer)


def probe(host: str, port: int, seconds: float) -> dict:
    rtts: list[float] = []
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.settimeout(TIMEOUT_S)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.monotonic()
            sock.send(PROBE.pack(sent, start).ljust(64, b"\0"))
            sent += 1
            try:
                while True:  # skip late answers to earlier probes
                    seq, t0 = PROBE.unpack_from(sock.recv(2048))
                    if seq == sent - 1:
                        rtts.append((time.monotonic() - t0) * 1000)
                        break
            except TimeoutError:
                pass
            time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - start)))
    rtts.sort()

    def pct(p: float) -> float | None:
        return round(rtts[min(len(rtts) - 1, int(p / 100 * len(rtts)))], 3) if rtts else None

    return {"sent": sent, "lost": sent - len(rtts), "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "max_ms": round(rtts[-1], 3) if rtts else None}  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        print(json.dumps(probe(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
