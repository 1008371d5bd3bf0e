"""ConntrackFlows against real conntrack tables: flows made by real UDP packets between two
namespaces, deleted from outside with `netns=` exactly as Felix deletes them inside its own.

Topology: host:eth0 (X and Y, v4 and v6) --veth-- peer:eth0 (P). The host tracks connections
(an iptables conntrack match loads the tracker) and DNATs V to X. Flows, all UDP:
P->X and P->V (X is their reply source), X->P (X is the original source), P->Y and Y->P
(another address's, which must stay).
"""

from __future__ import annotations

import re
import shutil
import sys

import pytest

from calico.dataplane.drivers.conntrack import ConntrackFlows
from calico.programs import Runner
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

ADDRS = {
    4: {"X": "198.18.60.1", "Y": "198.18.60.3", "P": "198.18.60.2", "V": "198.18.61.9"},
    6: {"X": "2001:db8:60::1", "Y": "2001:db8:60::3", "P": "2001:db8:60::2", "V": "2001:db8:61::9"},
}
_SEND = """
import socket, sys
for pair in sys.argv[1:]:
    src, dst = pair.split(",")
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0)); s.sendto(b"x", (dst, 4000)); s.close()
"""
_ORIG = re.compile(r"^udp .*?src=(\S+) dst=(\S+) ", re.MULTILINE)


@pytest.fixture
def topology(netns: Namespaces) -> tuple[Namespaces, str, str]:
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack not found (install the conntrack package)")
    host, peer = netns.add("cth"), netns.add("ctp")
    netns.veth(host, "eth0", peer, "eth0")
    for v, a in ADDRS.items():
        plen, tool, ip = (24, "iptables", "-4") if v == 4 else (64, "ip6tables", "-6")
        for name in ("X", "Y"):
            netns.exec(host, ["ip", ip, "addr", "add", f"{a[name]}/{plen}", "dev", "eth0", "nodad"])
        netns.exec(peer, ["ip", ip, "addr", "add", f"{a['P']}/{plen}", "dev", "eth0", "nodad"])
        netns.exec(peer, ["ip", ip, "route", "add", a["V"], "via", a["X"]])
        track = ["-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT"]
        netns.exec(host, [tool, *track])
        dnat = ["-t", "nat", "-A", "PREROUTING", "-d", a["V"], "-j", "DNAT"]
        netns.exec(host, [tool, *dnat, "--to-destination", a["X"]])
    return netns, host, peer


def flows(ns: Namespaces, host: str, v: int) -> set[tuple[str, str]]:
    """(original source, original destination) of the host's UDP entries of one family."""
    family = "ipv4" if v == 4 else "ipv6"
    out = ns.exec(host, ["conntrack", "-L", "-f", family, "-p", "udp"]).stdout
    return set(_ORIG.findall(out))


@pytest.mark.parametrize("v", [4, 6])
def test_deletes_the_flows_of_an_address_in_both_directions(
    topology: tuple[Namespaces, str, str], v: int
) -> None:
    ns, host, peer = topology
    a = ADDRS[v]
    ns.exec(peer, [sys.executable, "-c", _SEND, *(f"{a['P']},{a[d]}" for d in "XVY")])
    ns.exec(host, [sys.executable, "-c", _SEND, f"{a['X']},{a['P']}", f"{a['Y']},{a['P']}"])
    others = {(a["P"], a["Y"]), (a["Y"], a["P"])}
    xs = {(a["P"], a["X"]), (a["P"], a["V"]), (a["X"], a["P"])}
    assert flows(ns, host, v) == xs | others

    assert ConntrackFlows(Runner(netns=host)).remove_flows(v, a["X"]) == 3
    assert flows(ns, host, v) == others
    assert ConntrackFlows(Runner(netns=host)).remove_flows(v, a["X"]) == 0  # none left
    assert flows(ns, host, v) == others


@pytest.mark.parametrize("v", [4, 6])
def test_a_batch_lists_the_table_once_and_deletes_the_flows_of_its_addresses(
    topology: tuple[Namespaces, str, str], v: int
) -> None:
    ns, host, peer = topology
    a = ADDRS[v]
    ns.exec(peer, [sys.executable, "-c", _SEND, *(f"{a['P']},{a[d]}" for d in "XVY")])
    ns.exec(host, [sys.executable, "-c", _SEND, f"{a['X']},{a['P']}", f"{a['Y']},{a['P']}"])
    unused = "198.18.62.1" if v == 4 else "2001:db8:62::1"  # no flow: not deleted, no error
    assert ConntrackFlows(Runner(netns=host)).remove_flows_of(v, [a["X"], unused]) == 3
    assert flows(ns, host, v) == {(a["P"], a["Y"]), (a["Y"], a["P"])}
