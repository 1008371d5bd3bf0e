"""End to end inside namespaces: two workloads wired the way Calico's CNI wires them reach
each other through a host programmed only by RouteTable and LinkConfigurator.

Topology (every namespace created here; nothing in the root namespace):
  w1:eth0 --veth-- host:cali1   host:cali2 --veth-- w2:eth0
                   host:eth1 --veth-- upstream:eth0   (the host's default route)
Workloads: address /32 and /128, `169.254.1.1 dev eth0 scope link`, default via 169.254.1.1
and via fe80::ecee:eeff:feee:eeee (host side MAC ee:ee:ee:ee:ee:ee). Pings succeed only if
proxy ARP answers for 169.254.1.1, the host answers for its link-local gateway, and the /32
and /128 routes (plus forwarding) carry the packets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest

from calico.dataplane.drivers.links import LinkConfigurator, SysctlCommands
from calico.dataplane.drivers.routetable import RouteTable, RouteTarget
from calico.dataplane.kernel import open_netlink
from calico.programs import Runner
from calico.testing import waiting
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GW6 = "fe80::ecee:eeff:feee:eeee"
WORKLOADS = {"cali1": ("198.18.0.1", "2001:db8:1::1"), "cali2": ("198.18.0.2", "2001:db8:1::2")}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    waiting.wait_until(predicate, timeout)


def add_workload(ns: Namespaces, host: str, iface: str, v4: str, v6: str) -> tuple[str, str]:
    """A workload namespace wired like Calico's CNI plugin; returns (name, eth0 MAC)."""
    wl = ns.add(f"w{iface}")
    peer = ["peer", "name", "eth0", "netns", wl]
    ns.exec(host, ["ip", "link", "add", iface, "address", HOST_MAC, "type", "veth", *peer])
    ns.exec(host, ["sysctl", "-w", f"net.ipv6.conf.{iface}.accept_dad=0"])  # as the CNI does
    for where, dev in ((host, iface), (wl, "eth0")):
        ns.exec(where, ["ip", "link", "set", dev, "up"])
    for cmd in (
        ["ip", "addr", "add", f"{v4}/32", "dev", "eth0"],
        ["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"],
        ["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"],
        ["ip", "-6", "addr", "add", f"{v6}/128", "dev", "eth0", "nodad"],
        ["ip", "-6", "route", "add", "default", "via", GW6, "dev", "eth0"],
    ):
        ns.exec(wl, cmd)
    return wl, link_info(ns, wl, "eth0")["address"]


def link_info(ns: Namespaces, where: str, dev: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(ns.exec(where, ["ip", "-j", "link", "show", dev]).stdout)[0]
    return info


def add_upstream(ns: Namespaces, host: str) -> None:
    """Proxy ARP answers only for addresses the host routes elsewhere: give it a default."""
    upstream = ns.add("up")
    ns.veth(host, "eth1", upstream, "eth0")
    for where, dev, v4, v6 in (
        (host, "eth1", "198.18.255.1", "2001:db8:ff::1"),
        (upstream, "eth0", "198.18.255.2", "2001:db8:ff::2"),
    ):
        ns.exec(where, ["ip", "addr", "add", f"{v4}/30", "dev", dev])
        ns.exec(where, ["ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
    ns.exec(host, ["ip", "route", "add", "default", "via", "198.18.255.2"])
    ns.exec(host, ["ip", "-6", "route", "add", "default", "via", "2001:db8:ff::2"])


def pings(ns: Namespaces, src: str, dst: str) -> bool:
    return ns.exec(src, ["ping", "-c1", "-W1", dst], check=False).returncode == 0


def test_two_workloads_reach_each_other_over_ipv4_and_ipv6(netns: Namespaces) -> None:
    host = netns.add("host")
    add_upstream(netns, host)
    workloads = {i: add_workload(netns, host, i, *addrs) for i, addrs in WORKLOADS.items()}
    runner, factory = Runner(netns=host), functools.partial(open_netlink, host)
    tables = [RouteTable(runner, factory, v) for v in (4, 6)]
    links = LinkConfigurator(SysctlCommands(runner))
    for iface, (v4, v6) in WORKLOADS.items():
        mac = workloads[iface][1]
        tables[0].set_routes(iface, [RouteTarget(f"{v4}/32", mac)])
        tables[1].set_routes(iface, [RouteTarget(f"{v6}/128", mac)])
        links.set_interface(iface, spoofing_allowed=False, ipv6=True)
        info = link_info(netns, host, iface)
        targets: list[RouteTable | LinkConfigurator] = [*tables, links]
        for target in targets:
            target.on_iface_state(iface, info["operstate"] == "UP", info["ifindex"])
    try:
        links.apply()
        for table in tables:
            table.apply()
    finally:
        for table in tables:
            table.close()
    (w1, _), (w2, _) = workloads.values()
    wait_until(lambda: pings(netns, w1, "198.18.0.2") and pings(netns, w2, "198.18.0.1"))
    wait_until(lambda: pings(netns, w1, "2001:db8:1::2") and pings(netns, w2, "2001:db8:1::1"))
    gw = json.loads(netns.exec(w1, ["ip", "-j", "neigh", "show", "169.254.1.1"]).stdout)
    assert gw[0]["lladdr"] == HOST_MAC  # answered by proxy ARP
    proxies = netns.exec(host, ["ip", "-6", "neigh", "show", "proxy"]).stdout
    assert proxies.strip() == ""  # the link-local gateway needs no proxy NDP entry
