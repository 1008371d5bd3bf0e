"""Traffic between two network namespaces for the datapath benches: iperf3 (TCP throughput,
UDP packet rate) and ping round trips, each measured from inside the client's namespace.

Every server is a one-off (`iperf3 -s -1`) started here and killed by its PID afterwards,
also on failure: other users of the machine may run iperf3 at the same moment.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from calico import programs

IPERF_PORT = 5201
LISTEN_TIMEOUT = 10.0
_RTT = re.compile(r"time=([\d.]+) ms")


@dataclass(frozen=True, slots=True)
class UdpRate:
    """An iperf3 UDP run as the receiver saw it."""

    sent: int  # datagrams
    lost: int
    seconds: float

    @property
    def received_pps(self) -> float:
        return (self.sent - self.lost) / self.seconds

    @property
    def loss(self) -> float:
        return self.lost / self.sent if self.sent else 0.0


def in_ns(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def iperf(
    server_ns: str, client_ns: str, address: str, seconds: float, options: Sequence[str] = ()
) -> dict[str, Any]:
    """One iperf3 run from client_ns to a one-off server in server_ns; its JSON report."""
    server = programs.start(
        in_ns(server_ns, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)]),
        stdout=programs.DEVNULL,
        stderr=programs.DEVNULL,
    )
    try:
        _wait_listening(server_ns)
        argv = ["iperf3", "-c", address, "-p", str(IPERF_PORT), "-t", str(seconds), "-J",
                *options]  # fmt: skip
        proc = programs.run(in_ns(client_ns, argv), timeout=seconds + 30)
        report: dict[str, Any] = json.loads(proc.stdout or "{}")
        if proc.returncode != 0 or "error" in report:
            raise RuntimeError(f"iperf3 {address} {options}: {report.get('error', proc.stderr)}")
        return report
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def tcp_gbps(server_ns: str, client_ns: str, address: str, seconds: float) -> float:
    """TCP throughput, one stream, Gbit/s received."""
    report = iperf(server_ns, client_ns, address, seconds)
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def udp_rate(
    server_ns: str, client_ns: str, address: str, seconds: float, length: int = 64
) -> UdpRate:
    """UDP datagrams of `length` payload bytes sent as fast as the client can (`-b 0`)."""
    report = iperf(server_ns, client_ns, address, seconds, ["-u", "-l", str(length), "-b", "0"])
    end = report["end"]["sum"]  # the server's counts, as the client reports them
    return UdpRate(int(end["packets"]), int(end["lost_packets"]), float(end["seconds"]))


def ping_rtts(ns: str, address: str, count: int, interval: float) -> list[float]:
    """Round-trip times in microseconds of the echo requests answered."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", address]
    proc = programs.run(in_ns(ns, argv), timeout=count * interval + 30)
    return [float(m.group(1)) * 1000 for m in _RTT.finditer(proc.stdout)]


def _wait_listening(ns: str) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while True:
        out = programs.run(in_ns(ns, ["ss", "-Hltn"]), timeout=10).stdout
        if f":{IPERF_PORT} " in out:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ns}: iperf3 is not listening on {IPERF_PORT}")
        time.sleep(0.02)
