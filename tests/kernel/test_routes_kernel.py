"""RouteTable against the real kernel, inside namespaces created here: restart semantics
(recognise, sweep, leave foreign routes), tamper repair and interface flaps, IPv4 and IPv6."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from calico.dataplane.drivers.routetable import RTPROT_CALICO, RouteTable, RouteTarget
from calico.dataplane.kernel import open_netlink
from calico.programs import Runner
from calico.testing import waiting
from calico.testing.dataplane import RecordingRunner
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

NETS = {4: ("198.18.0.", "/32"), 6: ("2001:db8::", "/128")}


class Host:
    """A host namespace with workload veths cali1, cali2 and a non-workload eth1, whose
    peers sit (up) in a second namespace so the host sides are oper-up."""

    def __init__(self, ns: Namespaces, ip_version: int) -> None:
        self.ns, self.ip_version = ns, ip_version
        self.name = ns.add("host")
        peer = ns.add("peer")
        for i, dev in enumerate(("cali1", "cali2", "eth1")):
            ns.veth(self.name, dev, peer, f"p{i}")
        self.now = 1000.0
        self.opened = 0

    def cidr(self, host: int) -> str:
        prefix, length = NETS[self.ip_version]
        return f"{prefix}{host}{length}"

    def table(self, runner: Any = None, **kw: Any) -> RouteTable:
        def factory() -> Any:
            self.opened += 1
            return open_netlink(self.name)

        runner = runner or Runner(netns=self.name)
        return RouteTable(runner, factory, self.ip_version, clock=lambda: self.now, **kw)

    def ip(self, *args: str) -> None:
        self.ns.exec(self.name, ["ip", f"-{self.ip_version}", *args])

    def routes(self) -> dict[str, tuple[str, int]]:
        """CIDR -> (dev, proto) of the main table's unicast routes, kernel ones left out."""
        out = self.ns.exec(self.name, ["ip", "-j", "-N", f"-{self.ip_version}", "route", "show"])
        host_len = NETS[self.ip_version][1]
        routes = {}
        for r in json.loads(out.stdout):
            if r.get("protocol") != "2":
                cidr = r["dst"] if "/" in r["dst"] else r["dst"] + host_len
                routes[cidr] = (r["dev"], int(r.get("protocol", 3)))
        return routes

    def set_link(self, dev: str, up: bool, tables: Sequence[RouteTable]) -> None:
        self.ns.exec(self.name, ["ip", "link", "set", dev, "up" if up else "down"])
        want = "UP" if up else "DOWN"
        wait_until(lambda: self.link(dev)["operstate"] == want)
        for table in tables:
            table.on_iface_state(dev, up, int(self.link(dev)["ifindex"]))

    def link(self, dev: str) -> dict[str, Any]:
        out = self.ns.exec(self.name, ["ip", "-j", "link", "show", dev]).stdout
        info: dict[str, Any] = json.loads(out)[0]
        return info


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    waiting.wait_until(predicate, timeout, interval=0.05)


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def host(request: pytest.FixtureRequest, netns: Namespaces) -> Host:
    return Host(netns, request.param)


def program(table: RouteTable, host: Host) -> None:
    table.set_routes("cali1", [RouteTarget(host.cidr(i)) for i in range(1, 11)])
    table.set_routes("cali2", [RouteTarget(host.cidr(20))])
    table.apply()
    table.close()


def test_restart_recognises_its_routes_sweeps_stale_ones_and_spares_others(host: Host) -> None:
    program(host.table(), host)
    spy = RecordingRunner(Runner(netns=host.name))
    restarted, opened = host.table(spy), host.opened
    program(restarted, host)
    assert len(spy.calls) == 1 and "-j" in spy.calls[0]  # read once, wrote nothing
    assert host.opened == opened
    host.ip("route", "add", host.cidr(99), "dev", "cali1", "proto", str(RTPROT_CALICO))
    host.ip("route", "add", host.cidr(98), "dev", "cali1", "proto", "boot")  # external
    host.ip("route", "add", host.cidr(97), "dev", "eth1", "proto", str(RTPROT_CALICO))
    again = host.table()
    program(again, host)
    routes = host.routes()
    assert host.cidr(99) not in routes  # stale and ours: swept at once
    assert routes[host.cidr(98)] == ("cali1", 3)  # external: kept during the grace period
    assert routes[host.cidr(97)] == ("eth1", RTPROT_CALICO)  # not a workload interface
    assert routes[host.cidr(20)] == ("cali2", RTPROT_CALICO) and again.needs_apply
    host.now += 10.0
    again.apply()
    assert host.cidr(98) not in host.routes() and host.cidr(97) in host.routes()


def test_external_routes_survive_when_removal_is_off(host: Host) -> None:
    host.ip("route", "add", host.cidr(98), "dev", "cali1", "proto", "static")
    table = host.table(remove_external_routes=False)
    program(table, host)
    host.now += 3600.0
    table.resync()
    table.apply()
    assert host.routes()[host.cidr(98)] == ("cali1", 4)


def test_resync_restores_a_route_deleted_behind_its_back(host: Host) -> None:
    table = host.table()
    program(table, host)
    host.ip("route", "del", host.cidr(5), "dev", "cali1")
    table.apply()  # nothing dirty: tampering is only seen by a full read
    assert host.cidr(5) not in host.routes()
    table.resync()
    table.apply()
    table.close()
    assert host.routes()[host.cidr(5)] == ("cali1", RTPROT_CALICO)


def test_routes_return_when_the_interface_comes_back_up(host: Host) -> None:
    table = host.table()
    program(table, host)
    host.set_link("cali2", False, [table])
    table.apply()
    host.ip("route", "flush", "dev", "cali2")  # whatever the kernel kept on a down device
    host.set_link("cali2", True, [table])
    table.apply()
    table.close()
    assert host.routes()[host.cidr(20)] == ("cali2", RTPROT_CALICO)


def test_static_arp_entries_follow_the_routes(netns: Namespaces) -> None:
    host = Host(netns, 4)
    table = host.table()
    table.set_routes("cali1", [RouteTarget(host.cidr(1), "EE:00:00:00:00:01")])
    table.apply()
    neigh = json.loads(netns.exec(host.name, ["ip", "-j", "neigh", "show", "dev", "cali1"]).stdout)
    assert [(n["dst"], n["lladdr"], n["state"]) for n in neigh] == [
        ("198.18.0.1", "ee:00:00:00:00:01", ["PERMANENT"])
    ]
    table.remove_interface("cali1")
    table.apply()
    table.close()
    assert netns.exec(host.name, ["ip", "neigh", "show", "dev", "cali1"]).stdout.strip() == ""


def test_small_deletions_go_over_netlink_without_falling_back(host: Host) -> None:
    spy = RecordingRunner(Runner(netns=host.name))
    table = host.table(spy)
    program(table, host)
    spy.calls.clear()
    table.set_routes("cali2", [])
    table.apply()
    assert host.cidr(20) not in host.routes()
    assert spy.calls == []  # the delete matched over netlink: no `ip -batch` fallback
    table.close()
