"""End to end: rendered chains, programmed through the drivers, really filter packets.

Topology (all namespaces created here): a "host" namespace routes between workload
namespaces over veths named like Calico's (host side `cali*`). Workload A may send anything
(profile); workload B's ingress policy allows TCP to a port list that needs a match block (20
ports, 80 among them) and denies the rest; workload C's interface is unknown to Felix.
"""

from __future__ import annotations

import pytest

from calico.calc.messages import (
    Action,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
    PortRange,
    TierInfo,
    WorkloadEndpoint,
)
from calico.dataplane.drivers.iptables_table import IptablesTable
from calico.programs import Runner
from calico.rules import dispatch, endpoints, policy, static
from calico.rules.config import RulesConfig
from calico.rules.model import Chain
from calico.testing.netns import Namespaces
from calico.testing.waiting import wait_until

pytestmark = pytest.mark.kernel

CFG = RulesConfig()
WEB = PolicyID("default", "default.web")
WEB_POLICY = ParsedPolicy(
    inbound_rules=(
        ParsedRule(
            Action.ALLOW,
            protocol="TCP",
            dst_ports=(*(PortRange(p, p) for p in range(1, 20)), PortRange(80, 80)),
        ),
        ParsedRule(Action.DENY),
    )
)
NOOP = PolicyID("default", "default.noop")  # no rules: no verdict, the next policy decides
ALLOW_ALL = ParsedProfile(
    inbound_rules=(ParsedRule(Action.ALLOW),), outbound_rules=(ParsedRule(Action.ALLOW),)
)
WORKLOADS = {"a": 1, "b": 2, "c": 3}  # name -> host part of its addresses
HOST_V4, HOST_V6 = "198.18.0.1", "2001:db8:ff::1"

SERVER = """
import select, socket
socks = []
for port in (80, 81):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(16)
    socks.append(s)
while True:
    for s in select.select(socks, [], [])[0]:
        conn, _ = s.accept()
        conn.sendall(b"hi")
        conn.close()
"""
CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
    "print(s.recv(2).decode())\n"
)


def addr(version: int, n: int) -> str:
    return f"198.18.1.{n}" if version == 4 else f"2001:db8:1::{n}"


def wire(netns: Namespaces, host: str) -> dict[str, str]:
    """Workload namespaces wired to the host the way Calico's CNI plugin does it."""
    netns.exec(host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    netns.exec(host, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
    netns.exec(host, ["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])
    spaces = {}
    for name, n in WORKLOADS.items():
        ns = netns.add(name)
        netns.exec(ns, ["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])
        iface = f"cali{name * 3}"
        netns.veth(host, iface, ns, "eth0")
        for version, host_ip, plen in ((4, HOST_V4, 32), (6, HOST_V6, 128)):
            fam = f"-{version}"
            netns.exec(host, ["ip", fam, "addr", "add", f"{host_ip}/{plen}", "dev", iface])
            netns.exec(host, ["ip", fam, "route", "add", addr(version, n), "dev", iface])
            netns.exec(ns, ["ip", fam, "addr", "add", f"{addr(version, n)}/{plen}", "dev", "eth0"])
            netns.exec(ns, ["ip", fam, "route", "add", host_ip, "dev", "eth0"])
            netns.exec(ns, ["ip", fam, "route", "add", "default", "via", host_ip, "dev", "eth0"])
        spaces[name] = ns
    return spaces


def program_chains(known: list[WorkloadEndpoint]) -> list[Chain]:
    return [c for ep in known for c in endpoints.workload_endpoint_chains(CFG, ep)]


def program(runner: Runner, version: int, known: list[WorkloadEndpoint]) -> None:
    """Fresh table objects each time, as after a Felix restart: they diff against the kernel."""
    filter_chains: list[Chain] = [
        *static.static_filter_chains(CFG, version),
        *dispatch.workload_dispatch_chains(CFG, [ep.interface_name for ep in known]),
        *dispatch.host_filter_dispatch_chains([]),
        *policy.policy_chains(CFG, WEB, WEB_POLICY, version),
        *policy.policy_chains(CFG, NOOP, ParsedPolicy(), version),
        *policy.profile_chains(CFG, "kns.e2e", ALLOW_ALL, version),
        *program_chains(known),
    ]
    raw_chains = [
        *static.static_raw_chains(CFG, version, known),
        *dispatch.host_raw_dispatch_chains(CFG, []),
    ]
    for table_name, chains in (("raw", raw_chains), ("filter", filter_chains)):
        table = IptablesTable(table_name, version, runner)
        table.update_chains(chains)
        table.set_hooks(static.hooks(CFG, table_name))
        table.apply()


def connects(netns: Namespaces, ns: str, dst: str, port: int, timeout: float) -> bool:
    proc = netns.exec(
        ns, ["python3", "-c", CLIENT, dst, str(port), str(timeout)], check=False, timeout=30
    )
    return proc.returncode == 0 and proc.stdout.strip() == "hi"


def wait_for_server(netns: Namespaces, ns: str) -> None:
    wait_until(lambda: connects(netns, ns, "::1", 80, 0.5), 10, "test server starts", 0.05)


@pytest.mark.parametrize("grouped", [False, True])
def test_policy_filters_real_packets(netns: Namespaces, grouped: bool) -> None:
    """`grouped`: B's policy is reached through a policy group chain (rules/endpoints.py),
    after a policy of the same selection that has no verdict."""
    host = netns.add("host")
    spaces = wire(netns, host)
    tier = TierInfo("default", ingress_policies=(WEB,))
    if grouped:
        tier = TierInfo("default", ingress_policies=(NOOP, WEB), ingress_selections=("s:b",) * 2)
    known = [
        WorkloadEndpoint("caliaaa", None, (), (), ("kns.e2e",), ()),
        WorkloadEndpoint("calibbb", None, (), (), ("kns.e2e",), (tier,)),
    ]
    assert any(endpoints.is_policy_group(c.name) for c in program_chains(known)) == grouped
    runner = Runner(netns=host)
    for version in (4, 6):
        program(runner, version, known)
    netns.popen(spaces["b"], ["python3", "-c", SERVER])
    wait_for_server(netns, spaces["b"])

    for version in (4, 6):
        server = addr(version, WORKLOADS["b"])
        assert connects(netns, spaces["a"], server, 80, 5.0), f"IPv{version} tcp/80 blocked"
        assert not connects(netns, spaces["a"], server, 81, 1.0), f"IPv{version} tcp/81 allowed"
        assert not connects(netns, spaces["c"], server, 80, 1.0), f"IPv{version} unknown iface"
        # Host -> local workload is not policed by the workload's ingress policy.
        assert connects(netns, host, server, 81, 5.0), f"IPv{version} host -> workload blocked"

    # Once C is a known endpoint (with the allow-all profile) its traffic flows.
    known.append(WorkloadEndpoint("caliccc", None, (), (), ("kns.e2e",), ()))
    for version in (4, 6):
        program(runner, version, known)
        server = addr(version, WORKLOADS["b"])
        assert connects(netns, spaces["c"], server, 80, 5.0), f"IPv{version} known C blocked"
