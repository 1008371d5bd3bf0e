"""Test topology helpers: workloads wired the way Calico's CNI plugin wires them, an upstream
for the host, and real-packet probes (ICMP, TCP, UDP) between namespaces.

Workload: its own namespace, `eth0` with a /32 and a /128, `169.254.1.1 dev eth0 scope link`
and the default route via it, IPv6 default via fe80::ecee:eeff:feee:eeee (the host side has
MAC ee:ee:ee:ee:ee:ee, so the host owns that link-local address). Probes run inside the
source namespace with short timeouts, so traffic never leaves the test's namespaces.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from calico.probe_client import client_argv
from calico.testing.netns import Namespaces

HOST_SIDE_MAC = "ee:ee:ee:ee:ee:ee"
IPV6_GATEWAY = "fe80::ecee:eeff:feee:eeee"


@dataclass(frozen=True, slots=True)
class Workload:
    netns: str
    host_iface: str
    ipv4: str | None
    ipv6: str | None
    mac: str


def add_workload(
    ns: Namespaces,
    host: str,
    iface: str,
    ipv4: str | None,
    ipv6: str | None,
    name: str | None = None,
) -> Workload:
    """Create a workload namespace attached to `host` by a veth whose host side is `iface`."""
    wl = ns.add(name or f"w-{iface}")
    peer = ["peer", "name", "eth0", "netns", wl]
    ns.exec(host, ["ip", "link", "add", iface, "address", HOST_SIDE_MAC, "type", "veth", *peer])
    ns.exec(host, ["sysctl", "-qw", f"net.ipv6.conf.{iface.replace('.', '/')}.accept_dad=0"])
    for where, dev in ((host, iface), (wl, "eth0")):
        ns.exec(where, ["ip", "link", "set", dev, "up"])
    if ipv4:
        ns.exec(wl, ["ip", "addr", "add", f"{ipv4}/32", "dev", "eth0"])
        ns.exec(wl, ["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"])
        ns.exec(wl, ["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"])
    if ipv6:
        ns.exec(wl, ["ip", "-6", "addr", "add", f"{ipv6}/128", "dev", "eth0", "nodad"])
        ns.exec(wl, ["ip", "-6", "route", "add", "default", "via", IPV6_GATEWAY, "dev", "eth0"])
    link = json.loads(ns.exec(wl, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
    return Workload(wl, iface, ipv4, ipv6, link["address"])


def add_upstream(ns: Namespaces, host: str, suffix: str = "up") -> str:
    """Give `host` a default route over a veth to a dead-end namespace (proxy ARP answers
    only for destinations the host routes elsewhere)."""
    upstream = ns.add(suffix)
    ns.veth(host, "eth1", upstream, "eth0")
    for where, dev, v4, v6 in (
        (host, "eth1", "198.18.255.1", "2001:db8:ff::1"),
        (upstream, "eth0", "198.18.255.2", "2001:db8:ff::2"),
    ):
        ns.exec(where, ["ip", "addr", "add", f"{v4}/30", "dev", dev])
        ns.exec(where, ["ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
    ns.exec(host, ["ip", "route", "add", "default", "via", "198.18.255.2"])
    ns.exec(host, ["ip", "-6", "route", "add", "default", "via", "2001:db8:ff::2"])
    return upstream


def ping(ns: Namespaces, src: str, dst: str, timeout: int = 1) -> bool:
    return ns.exec(src, ["ping", "-c1", f"-W{timeout}", dst], check=False).returncode == 0


_SERVER = """
import socket, sys, threading
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
def tcp():
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
def udp():
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    while True:
        data, peer = s.recvfrom(64); s.sendto(b"ok", peer)
threading.Thread(target=udp, daemon=True).start()
tcp()
"""


def serve(ns: Namespaces, where: str, address: str, port: int) -> None:
    """A TCP and UDP echo-"ok" server on address:port inside `where` (killed on ns.close())."""
    ns.popen(where, [sys.executable, "-c", _SERVER, address, str(port)])


def connects(
    ns: Namespaces, src: str, proto: str, dst: str, port: int, timeout: float = 1.0
) -> bool:
    """True if a TCP connection (or a UDP request/reply) from `src` to dst:port succeeds."""
    return (
        ns.exec(
            src, client_argv(proto, dst, port, timeout), check=False, timeout=timeout + 10
        ).returncode
        == 0
    )
