"""IP autodetection inside a namespace with several interfaces: each of calico/node's methods
picks the address Calico would, over real netlink and a real route lookup (can-reach)."""

from __future__ import annotations

import sys

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

# In interface-index order: eth0, eth1, then a workload interface first-found must skip.
ADDRESSES = {
    "eth0": ["198.18.10.2/24", "2001:db8:10::2/64"],
    "eth1": ["198.18.11.2/25", "198.18.11.3/25", "2001:db8:11::2/64"],
    "cali0123456789a": ["198.18.12.2/24", "2001:db8:12::2/64"],
}
DETECT = """
import sys
from calico.node.autodetect import AutodetectError, detect, host_addresses
from calico.node.config import NodeConfigError, parse_autodetection_method
version = int(sys.argv[2])
try:
    method = parse_autodetection_method("IP_AUTODETECTION_METHOD", sys.argv[1], version)
    print(detect(method, version, host_addresses))
except (AutodetectError, NodeConfigError) as exc:
    print(f"error: {exc}")
"""


@pytest.fixture
def host(netns: Namespaces) -> str:
    host, peer = netns.add("host"), netns.add("peer")
    for n, (ifname, cidrs) in enumerate(ADDRESSES.items()):
        netns.veth(host, ifname, peer, f"p{n}")
        for cidr in cidrs:
            netns.exec(host, ["ip", "addr", "add", cidr, "dev", ifname, "nodad"])
    netns.exec(host, ["ip", "route", "add", "default", "via", "198.18.10.1"])
    netns.exec(host, ["ip", "-6", "route", "add", "default", "via", "2001:db8:10::1"])
    return host


def detect(netns: Namespaces, host: str, method: str, version: int) -> str:
    argv = [sys.executable, "-c", DETECT, method, str(version)]
    return netns.exec(host, argv).stdout.strip()


@pytest.mark.parametrize(
    ("method", "version", "expected"),
    [
        ("first-found", 4, "198.18.11.2/25"),  # highest index first, cali* skipped
        ("first-found", 6, "2001:db8:11::2/64"),
        ("interface=eth0", 4, "198.18.10.2/24"),
        ("interface=eth0", 6, "2001:db8:10::2/64"),
        ("interface=^cali", 4, "198.18.12.2/24"),
        ("skip-interface=eth1", 4, "198.18.10.2/24"),
        ("skip-interface=eth1", 6, "2001:db8:10::2/64"),
        ("skip-interface=eth.*", 4, "error: no global IPv4 address on a matching interface"),
        ("cidr=198.18.10.0/24", 4, "198.18.10.2/24"),
        ("cidr=198.18.11.3/32", 4, "198.18.11.3/25"),
        ("cidr=2001:db8:10::/48", 6, "2001:db8:10::2/64"),
        ("can-reach=198.18.11.100", 4, "198.18.11.2/25"),  # the connected route on eth1
        ("can-reach=198.18.12.9", 4, "198.18.12.2/24"),  # any interface, even cali*
        ("can-reach=198.19.200.1", 4, "198.18.10.2/24"),  # the default route's
        ("can-reach=2001:db8:11::99", 6, "2001:db8:11::2/64"),
        ("can-reach=2001:db8:99::1", 6, "2001:db8:10::2/64"),
    ],
)
def test_each_method_picks_calicos_address(
    netns: Namespaces, host: str, method: str, version: int, expected: str
) -> None:
    assert detect(netns, host, method, version) == expected


def test_can_reach_without_a_route_fails(netns: Namespaces, host: str) -> None:
    netns.exec(host, ["ip", "route", "del", "default"])
    assert detect(netns, host, "can-reach=198.19.200.1", 4).startswith("error: no route to")
