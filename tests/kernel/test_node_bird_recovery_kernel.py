"""When calico node starts BIRD in graceful restart recovery (-R): only when a previous
BIRD's routes (kernel protocol `bird`) are in the host's routing tables, v4 or v6."""

from __future__ import annotations

import sys

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

ARGS = "from calico.node.daemon import recovery_args; print(recovery_args())"


def recovery(netns: Namespaces, host: str) -> str:
    return netns.exec(host, [sys.executable, "-c", ARGS]).stdout.strip()


@pytest.mark.parametrize(
    ("version", "route"),
    [("-4", "198.19.0.0/26 via 198.18.10.9"), ("-6", "2001:db8:19::/122 via 2001:db8:10::9")],
)
def test_recovery_only_when_bird_routes_are_left(
    netns: Namespaces, version: str, route: str
) -> None:
    host, peer = netns.add("host"), netns.add("peer")
    netns.veth(host, "eth0", peer, "p0")
    for cidr in ("198.18.10.2/24", "2001:db8:10::2/64"):
        netns.exec(host, ["ip", "addr", "add", cidr, "dev", "eth0", "nodad"])
    assert recovery(netns, host) == "[]"  # a fresh host
    netns.exec(host, ["ip", version, "route", "add", *route.split(), "proto", "static"])
    assert recovery(netns, host) == "[]"  # other programs' routes only
    netns.exec(host, ["ip", version, "route", "flush", "proto", "static"])
    netns.exec(host, ["ip", version, "route", "add", *route.split(), "proto", "bird"])
    assert recovery(netns, host) == "['-R']"
