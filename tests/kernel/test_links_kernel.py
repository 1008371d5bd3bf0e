"""LinkConfigurator against real sysctls inside a namespace created here, including an
interface name with a dot (which sysctl must be given with '/'), through the `sysctl`
program and through /proc/sys files opened by a thread inside the namespace (Felix's way)."""

from __future__ import annotations

import pytest

from calico.dataplane.drivers.links import (
    LinkConfigurator,
    SysctlCommands,
    SysctlFiles,
    SysctlWriteFailed,
    interface_sysctls,
)
from calico.dataplane.kernel import in_netns
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
    links = LinkConfigurator(SysctlCommands(Runner(netns=host)))
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


def test_sysctl_files_are_those_of_the_calling_threads_namespace(netns: Namespaces) -> None:
    host, peer = netns.add("host"), netns.add("peer")
    netns.veth(host, "cali.x1", peer, "p1")
    links = LinkConfigurator(SysctlFiles())  # opens its files on in_netns's thread: `host`
    links.set_interface("cali.x1", spoofing_allowed=False, ipv6=True)
    links.on_iface_state("cali.x1", True, 2)
    in_netns(host, links.apply)
    wanted = interface_sysctls("cali.x1", spoofing_allowed=False, ipv6=True)
    assert read(netns, host, list(wanted)) == wanted
    assert read(netns, host, ["net.ipv4.ip_forward"]) == {"net.ipv4.ip_forward": "1"}

    netns.exec(host, ["sysctl", "-w", "net.ipv4.conf.cali/x1.rp_filter=0"])  # tampering
    links.resync()
    assert not in_netns(host, lambda: SysctlFiles().read(["net.ipv4.conf.nothere.rp_filter"]))
    in_netns(host, links.apply)
    assert read(netns, host, list(wanted)) == wanted

    # A write that fails (no such interface) is reported by name; the others are written.
    netns.exec(host, ["sysctl", "-w", "net.ipv4.conf.cali/x1.proxy_arp=0"])
    files = SysctlFiles()
    writes = {"net.ipv4.conf.gone9.proxy_arp": "1", "net.ipv4.conf.cali/x1.proxy_arp": "1"}
    with pytest.raises(SysctlWriteFailed, match=r"net\.ipv4\.conf\.gone9\.proxy_arp=1"):
        in_netns(host, lambda: files.write(writes))
    assert (
        read(netns, host, ["net.ipv4.conf.cali/x1.proxy_arp"])["net.ipv4.conf.cali/x1.proxy_arp"]
        == "1"
    )
