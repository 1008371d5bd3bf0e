"""Conntrack cleanup with real packets: a reused address inherits no flows, while a policy
change cuts no established flow (Calico's semantics).

Every endpoint chain accepts RELATED,ESTABLISHED packets before any policy, so the flows of
a deleted workload would carry on to the next workload that gets its address. Felix deletes
the conntrack entries of an address when its route leaves the interface; policy updates
delete nothing.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from calico import programs
from calico.model.base import Resource
from calico.model.endpoints import WorkloadEndpoint
from calico.testing.netns import Namespaces
from calico.testing.workloads import Workload, connects, serve

from .conftest import Cluster, FelixHost, wait_until

pytestmark = pytest.mark.fv

PORT = 8080
ADDRS = {  # version -> (P, A and then B, C)
    4: ("198.19.0.10", "198.19.0.1", "198.19.0.20"),
    6: ("2001:db8:100::10", "2001:db8:100::1", "2001:db8:100::20"),
}
ECHO = """
import socket, sys, threading
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
def echo(c):
    c.sendall(b"ok")  # what calico.testing.workloads.connects expects
    while data := c.recv(64):
        c.sendall(data)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""
# One TCP connection kept open; each stdin line "<seconds> [payload]" sends the payload (if
# any) and reports what came back within the time: "reply <data>", "timeout" or "reset".
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
assert c.recv(2) == b"ok"
print("port", c.getsockname()[1], flush=True)
for line in sys.stdin:
    wait, _, payload = line.strip().partition(" ")
    c.settimeout(float(wait))
    try:
        if payload:
            c.sendall(payload.encode())
        data = c.recv(64)
        print("reply " + data.decode() if data else "closed", flush=True)
    except socket.timeout:
        print("timeout", flush=True)
    except ConnectionResetError:
        print("reset", flush=True)
"""


class Connection:
    """The client end of one open TCP connection, in its workload's namespace."""

    def __init__(self, proc: programs.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self.port = int(proc.stdout.readline().split()[1])

    def exchange(self, payload: str = "", wait: float = 3.0) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{wait} {payload}\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()


@contextmanager
def connection(netns: str, addr: str) -> Iterator[Connection]:
    proc = programs.start(
        ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, addr, str(PORT)],
        stdin=programs.PIPE,
        stdout=programs.PIPE,
        text=True,
        new_session=True,
    )
    try:
        yield Connection(proc)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def tcp_counters(ns: Namespaces, netns: str) -> dict[str, int]:
    """The namespace's TCP MIB (one for IPv4 and IPv6): InSegs, OutRsts, ..."""
    snmp = ns.exec(netns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
    names, values = (ln.split()[1:] for ln in snmp if ln.startswith("Tcp:"))
    return dict(zip(names, map(int, values), strict=True))


def tracked(host: FelixHost, v: int, addr: str) -> bool:
    """Whether the host tracks a TCP flow from `addr`."""
    out = host.exec(["conntrack", "-L", "-f", f"ipv{v}", "-p", "tcp"]).stdout
    return re.search(rf"src={re.escape(addr)} ", out) is not None


def start(cluster: Cluster) -> tuple[FelixHost, Workload, Workload, Resource]:
    host = cluster.host("h1")
    # As the blackhole route of a host's own IPAM block does (BIRD, VXLAN): a workload address
    # with no route is dropped, not sent up the default route, where a late packet of a gone
    # workload's flow (a delayed ACK) would be tracked again once its entry was deleted.
    for v, block in ((4, "198.19.0.0/24"), (6, "2001:db8:100::/64")):
        host.exec(["ip", f"-{v}", "route", "add", "blackhole", block])
    peer = host.add_workload("calip", ADDRS[4][0], ADDRS[6][0])
    a = host.add_workload("calia", ADDRS[4][1], ADDRS[6][1])
    cluster.add_endpoint(host, peer, "p", role="peer")
    wep_a = cluster.add_endpoint(host, a, "a", role="a")
    for v in (4, 6):
        cluster.ns.popen(a.netns, [sys.executable, "-c", ECHO, ADDRS[v][1], str(PORT)])
    host.start()
    host.wait_ready()
    return host, peer, a, wep_a


@pytest.mark.parametrize("v", [4, 6])
def test_a_reused_address_inherits_no_flows(cluster: Cluster, v: int) -> None:
    ns = cluster.ns
    p_addr, ab_addr, _ = ADDRS[v]
    host, peer, a, wep_a = start(cluster)
    wait_until(lambda: connects(ns, peer.netns, "tcp", ab_addr, PORT), what="p -> a")
    with connection(peer.netns, ab_addr) as conn:
        assert conn.exchange("hello") == "reply hello"
        assert tracked(host, v, p_addr)

        # A goes (its veth first, as a CNI DEL does, then its endpoint); Felix deletes its
        # address's flows.
        host.exec(["ip", "link", "del", a.host_iface])
        cluster.delete(WorkloadEndpoint, wep_a.name, "default")
        wait_until(lambda: not tracked(host, v, p_addr), what="a's flows deleted")

        # B gets A's address on a new interface; its policy denies P, allows C.
        cluster.apply({
            "kind": "GlobalNetworkPolicy", "metadata": {"name": "b-ingress"},
            "spec": {"selector": "role == 'b'", "ingress": [
                {"action": "Deny", "source": {"selector": "role == 'peer'"}},
                {"action": "Allow"},
            ]},
        })  # fmt: skip
        b = host.add_workload("calib", ADDRS[4][1], ADDRS[6][1])
        c = host.add_workload("calic", ADDRS[4][2], ADDRS[6][2])
        cluster.add_endpoint(host, b, "b", role="b")
        cluster.add_endpoint(host, c, "c", role="c")
        serve(ns, b.netns, ab_addr, PORT)
        wait_until(lambda: connects(ns, c.netns, "tcp", ab_addr, PORT), what="c -> b")
        assert not connects(ns, peer.netns, "tcp", ab_addr, PORT)

        # The old connection's next packets (the data and its retransmissions) reach nobody.
        before = tcp_counters(ns, b.netns)
        assert conn.exchange("again", wait=3.0) == "timeout"
        assert tcp_counters(ns, b.netns)["InSegs"] == before["InSegs"]

        # Control: with the flow's entry put back by hand, the next retransmission gets
        # through to B, which knows no such connection and resets it.
        host.exec([
            "conntrack", "-I", "-p", "tcp", "-s", p_addr, "-d", ab_addr,
            "--sport", str(conn.port), "--dport", str(PORT), "--state", "ESTABLISHED",
            "-u", "SEEN_REPLY,ASSURED", "-t", "120",
        ])  # fmt: skip
        assert conn.exchange(wait=20.0) == "reset"
        assert tcp_counters(ns, b.netns)["OutRsts"] > before["OutRsts"]


@pytest.mark.parametrize("v", [4, 6])
def test_a_policy_change_cuts_no_established_flow(cluster: Cluster, v: int) -> None:
    ns = cluster.ns
    p_addr, a_addr, _ = ADDRS[v]
    host, peer, *_ = start(cluster)
    wait_until(lambda: connects(ns, peer.netns, "tcp", a_addr, PORT), what="p -> a")
    with connection(peer.netns, a_addr) as conn:
        assert conn.exchange("hello") == "reply hello"
        cluster.apply({
            "kind": "GlobalNetworkPolicy", "metadata": {"name": "a-ingress"},
            "spec": {"selector": "role == 'a'", "ingress": [
                {"action": "Deny", "source": {"selector": "role == 'peer'"}},
            ]},
        })  # fmt: skip
        wait_until(lambda: not connects(ns, peer.netns, "tcp", a_addr, PORT), what="p denied")
        assert conn.exchange("still") == "reply still"
        assert tracked(host, v, p_addr)


def test_an_address_an_endpoint_loses_loses_its_flows_and_only_those(cluster: Cluster) -> None:
    ns = cluster.ns
    host, peer, a, _ = start(cluster)
    wait_until(lambda: connects(ns, peer.netns, "tcp", ADDRS[6][1], PORT), what="p -> a")
    with connection(peer.netns, ADDRS[4][1]) as conn4, connection(peer.netns, ADDRS[6][1]):
        assert tracked(host, 4, ADDRS[4][0]) and tracked(host, 6, ADDRS[6][0])
        cluster.add_endpoint(host, dataclasses.replace(a, ipv6=None), "a", role="a")
        wait_until(lambda: not tracked(host, 6, ADDRS[6][0]), what="a's IPv6 flows deleted")
        assert tracked(host, 4, ADDRS[4][0])
        assert conn4.exchange("v4") == "reply v4"
