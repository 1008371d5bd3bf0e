"""LinkConfigurator against real sysctls inside a namespace created here, including an
interface name with a dot (which sysctl must be given with '/')."""

from __future__ import annotations

import pytest

from calico.dataplane.drivers.links import LinkConfigurator, interface_sysctls
from calico.programs import Runner
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


def read(ns: Namespaces, where: str, names: list[str]) -> dict[str, str]:
    out = ns.exec(where, ["sysctl", *names]).stdout
    return dict(line.split(" = ", 1) for line in out.splitlines())


def test_workload_interfaces_get_calico_settings_and_keep_them(netns: Namespaces) -> None:
    host, peer = netns.add("host"), netns.add("peer")
    netns.veth(host, "cali.x1", peer, "p1")
    netns.veth(host, "cali2", peer, "p2")
    netns.exec(peer, ["ip", "link", "set", "p2", "down"])  # cali2 is oper-down
    links = LinkConfigurator(Runner(netns=host))
    links.set_interface("cali.x1", spoofing_allowed=True, ipv6=True)
    links.set_interface("cali2", spoofing_allowed=False, ipv6=True)
    links.on_iface_state("cali.x1", True, 2)
    links.on_iface_state("cali2", False, 3)
    links.apply()
    wanted = interface_sysctls("cali.x1", spoofing_allowed=True, ipv6=True)
    assert read(netns, host, list(wanted)) == wanted
    assert read(netns, host, ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) == {
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
    }
    assert read(netns, host, ["net.ipv4.conf.cali2.proxy_arp"]) == {
        "net.ipv4.conf.cali2.proxy_arp": "0"
    }

    netns.exec(host, ["sysctl", "-w", "net.ipv4.conf.cali/x1.proxy_arp=0"])  # tampering
    links.resync()
    links.apply()
    assert read(netns, host, list(wanted)) == wanted

    netns.exec(peer, ["ip", "link", "set", "p2", "up"])
    links.on_iface_state("cali2", True, 3)
    links.apply()
    wanted2 = interface_sysctls("cali2", spoofing_allowed=False, ipv6=True)
    assert read(netns, host, list(wanted2)) == wanted2
    assert not links.needs_apply
