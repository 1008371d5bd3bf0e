"""The DHCP agent's tap MTU watcher on real netlink events in a namespace created here."""

from __future__ import annotations

import threading

import pytest
from pyroute2 import IPRoute

from calico.openstack.dhcp.links import TapMtus
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


def test_taps_appear_change_and_go(netns: Namespaces) -> None:
    host, vm = netns.add("host"), netns.add("vm")
    changed = threading.Event()
    # A resync far beyond the test: only netlink events can report the changes.
    mtus = TapMtus(changed.set, resync_interval=600, netlink=lambda: IPRoute(netns=host))
    mtus.start()
    try:

        def after(*command: str) -> dict[str, int]:
            changed.clear()
            netns.exec(host, list(command))
            assert changed.wait(5), f"no change reported after {command}"
            return mtus.get()

        netns.exec(host, ["ip", "link", "add", "other0", "type", "veth", "peer", "name", "o1"])
        assert mtus.get() == {}  # only taps count
        assert after("ip", "link", "add", "tapabc", "type", "veth", "peer", "name", "eth0",
                     "netns", vm) == {"tapabc": 1500}  # fmt: skip
        assert after("ip", "link", "set", "tapabc", "mtu", "1450") == {"tapabc": 1450}
        assert after("ip", "link", "del", "tapabc") == {}
    finally:
        mtus.stop()
