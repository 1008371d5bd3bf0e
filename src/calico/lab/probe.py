"""Real-packet probes between lab namespaces: ICMP echo, a TCP connection, a UDP exchange.

A probe runs inside the source's namespace with a short timeout (the lab's namespaces have
no route off the machine). Success means an answer came back: for TCP and UDP, the echo
listener's "ok" (see `calico.lab.echo`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from calico.lab.netns import in_ns

PROTOCOLS = ("tcp", "udp", "icmp")

# One connection attempt (argv: proto address port timeout), exit 0 when the echo answers
# "ok"; calico.testing.workloads uses it too, so tests probe exactly as the lab does.
CLIENT_SCRIPT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(family, kind); s.settimeout(float(sys.argv[4]))
try:
    if kind == socket.SOCK_STREAM:
        s.connect((sys.argv[2], int(sys.argv[3]))); ok = s.recv(2) == b"ok"
    else:
        s.sendto(b"hi", (sys.argv[2], int(sys.argv[3]))); ok = s.recvfrom(2)[0] == b"ok"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
"""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    source: str
    target: str
    address: str
    proto: str
    port: int | None
    ok: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        port = f":{self.port}" if self.port else ""
        verdict = "connected" if self.ok else "blocked"
        where = f"{self.target} ({self.address}{port})"
        return f"{self.source} -> {where} {self.proto}: {verdict} in {self.seconds:.2f}s"


def probe_argv(proto: str, address: str, port: int | None, timeout: float) -> list[str]:
    """The command that probes `address` from inside a namespace."""
    if proto == "icmp":
        wait = max(1, round(timeout))
        return ["ping", "-n", "-q", "-c", "1", "-W", str(wait), address]
    if port is None:
        raise ValueError(f"a {proto} probe needs a port")
    return [sys.executable, "-c", CLIENT_SCRIPT, proto, address, str(port), str(timeout)]


def run_probe(
    netns: str,
    source: str,
    target: str,
    address: str,
    proto: str,
    port: int | None,
    timeout: float = 1.0,
) -> ProbeResult:
    argv = probe_argv(proto, address, port, timeout)
    started = time.monotonic()
    proc = in_ns(netns, argv, check=False, timeout=timeout + 10)
    seconds = time.monotonic() - started
    return ProbeResult(source, target, address, proto, port, proc.returncode == 0, seconds)
