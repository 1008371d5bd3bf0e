"""Real-packet probes between lab namespaces: ICMP echo, a TCP connection, a UDP exchange.

A probe runs inside the source's namespace with a short timeout (the lab's namespaces have
no route off the machine). Success means an answer came back: for TCP and UDP, the echo
listener's "ok" (see `calico.lab.echo`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from calico.lab.netns import in_ns
from calico.probe_client import client_argv

PROTOCOLS = ("tcp", "udp", "icmp")


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
    return client_argv(proto, address, port, timeout)


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
