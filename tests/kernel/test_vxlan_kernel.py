"""Felix's VXLAN dataplane in real namespaces, with real packets (topology: vxlan_harness).

Each host runs the dataplane loop (iptables, IP sets, routes, VXLAN devices) fed the
messages the calculation would send it; workloads ping across hosts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.calc.messages import RouteRemove, RouteType, RouteUpdate, VTEPRemove
from calico.model.vxlan import device_name, vtep_mac
from calico.testing.netns import Namespaces
from calico.testing.waiting import wait_until

from .vxlan_harness import (
    Lab,
    block,
    build,
    full_state,
    host_ip,
    tunnel_ip,
    vtep,
    workload_ip,
)

pytestmark = pytest.mark.kernel


@pytest.fixture
def lab(netns: Namespaces, tmp_path: Path) -> Iterator[Lab]:
    built = build(netns, tmp_path)
    try:
        yield built
    finally:
        built.stop_all()


def tx_packets(lab: Lab, host: str, version: int) -> int:
    link = lab.link(host, version)
    return int(link["stats64"]["tx"]["packets"]) if link else 0


def reach(lab: Lab, src: str, dst: str) -> None:
    wait_until(lambda: lab.pings(src, dst), 15, f"ping {src} -> {dst}")


def test_workloads_reach_each_other_through_vxlan_v4_and_v6(lab: Lab) -> None:
    a, b = lab.dataplane("a"), lab.dataplane("b")
    a.send(full_state("a", ["b"]))
    b.send(full_state("b", ["a"]))
    for version in (4, 6):
        before = tx_packets(lab, "a", version)
        reach(lab, "a", workload_ip("b", version))
        assert lab.pings("b", workload_ip("a", version))
        assert tx_packets(lab, "a", version) > before  # it went through the tunnel
    for version, overhead in ((4, 50), (6, 70)):
        link = lab.link("a", version)
        assert link is not None
        data = link["linkinfo"]["info_data"]
        assert (data["id"], data["port"], data["learning"], data["link"]) == (
            4096,
            4789,
            False,
            "eth0",
        )
        assert link["address"] == vtep_mac("a", version)
        assert link["mtu"] == 1500 - overhead
        route = lab.routes("a", version)[block("b", version)]
        assert route["gateway"] == tunnel_ip("b", version)
        assert route["dev"] == device_name(version) and "onlink" in route["flags"]
        assert lab.routes("a", version)[block("a", version)]["type"] == "blackhole"
        assert lab.neighbours("a", version) == {tunnel_ip("b", version): vtep_mac("b", version)}
        assert lab.fdb("a", version) == {(vtep_mac("b", version), host_ip("b", version))}
    assert lab.mtu_file("a").read_text() == "1430"  # the smaller of the two tunnel MTUs


def test_direct_routes_carry_packets_unencapsulated(lab: Lab) -> None:
    a, b = lab.dataplane("a"), lab.dataplane("b")
    a.send(full_state("a", ["b"], RouteType.DIRECT))
    b.send(full_state("b", ["a"], RouteType.DIRECT))
    for version in (4, 6):
        reach(lab, "a", workload_ip("b", version))
        before = tx_packets(lab, "a", version)
        assert lab.pings("a", workload_ip("b", version))
        assert tx_packets(lab, "a", version) == before  # not through the tunnel
        route = lab.routes("a", version)[block("b", version)]
        assert (route["gateway"], route["dev"]) == (host_ip("b", version), "eth0")
        assert "onlink" not in route["flags"]


def test_removing_a_vtep_and_its_route_removes_neighbour_fdb_and_route(lab: Lab) -> None:
    a = lab.dataplane("a")
    a.send(full_state("a", ["b", "c"]))
    wait_until(lambda: len(lab.fdb("a", 6)) == 2, 15, "FDB entries for b and c")
    a.send([VTEPRemove("b", 4), RouteRemove(block("b", 4)), VTEPRemove("b", 6)])
    wait_until(lambda: block("b", 4) not in lab.routes("a", 4), 10, "b's v4 route gone")
    wait_until(lambda: tunnel_ip("b", 6) not in lab.neighbours("a", 6), 10, "b's v6 neighbour")
    assert lab.neighbours("a", 4) == {tunnel_ip("c", 4): vtep_mac("c", 4)}
    assert lab.fdb("a", 4) == {(vtep_mac("c", 4), host_ip("c", 4))}
    assert lab.fdb("a", 6) == {(vtep_mac("c", 6), host_ip("c", 6))}
    assert block("b", 6) in lab.routes("a", 6)  # its route was not removed
    assert block("c", 4) in lab.routes("a", 4)


def test_drift_is_corrected(lab: Lab) -> None:
    a = lab.dataplane("a")
    a.send(full_state("a", ["b"]))
    wait_until(lambda: block("b", 4) in lab.routes("a", 4), 15, "v4 route to b")
    dev = device_name(4)
    lab.exec("a", "ip", "link", "set", dev, "mtu", "1300")
    lab.exec("a", "ip", "addr", "add", "198.19.9.9/32", "dev", dev)
    lab.exec("a", "bridge", "fdb", "del", vtep_mac("b", 4), "dev", dev, "dst", host_ip("b", 4))
    lab.exec("a", "ip", "neigh", "replace", tunnel_ip("b", 4), "lladdr", "66:00:00:00:00:01",
             "dev", dev, "nud", "permanent")  # fmt: skip
    lab.exec("a", "ip", "route", "del", block("b", 4))

    def repaired() -> bool:
        link = lab.link("a", 4)
        addrs = lab.json("a", "ip", "-j", "-4", "addr", "show", "dev", dev)[0]["addr_info"]
        return (
            link is not None
            and link["mtu"] == 1450
            and [x["local"] for x in addrs] == [tunnel_ip("a", 4)]
            and lab.fdb("a", 4) == {(vtep_mac("b", 4), host_ip("b", 4))}
            and lab.neighbours("a", 4) == {tunnel_ip("b", 4): vtep_mac("b", 4)}
            and block("b", 4) in lab.routes("a", 4)
        )

    wait_until(repaired, 15, "device, address, FDB, neighbour and route repaired")
    lab.stop(a)  # a running Felix would recreate the device between our two commands
    index = lab.link("a", 4)["ifindex"]  # type: ignore[index]
    lab.exec("a", "ip", "link", "del", dev)
    lab.exec("a", "ip", "link", "add", dev, "type", "vxlan", "id", "7", "dstport", "4790",
             "local", host_ip("a", 4), "dev", "eth0")  # fmt: skip
    lab.dataplane("a").send(full_state("a", ["b"]))

    def vni() -> object:
        return (lab.link("a", 4) or {}).get("linkinfo", {}).get("info_data", {}).get("id")

    wait_until(lambda: vni() == 4096, 15, "device with the wrong VNI and port recreated")
    assert lab.link("a", 4)["ifindex"] != index  # type: ignore[index]
    wait_until(lambda: block("b", 4) in lab.routes("a", 4), 15, "route back on the new device")


def test_a_restarted_felix_removes_stale_entries_and_keeps_good_ones(lab: Lab) -> None:
    a = lab.dataplane("a")
    a.send(full_state("a", ["b", "c"]))
    wait_until(lambda: block("c", 6) in lab.routes("a", 6), 15, "routes programmed")
    lab.stop(a)
    index = lab.link("a", 4)["ifindex"]  # type: ignore[index]
    lab.exec("a", "ip", "route", "add", "198.18.77.0/24", "via", "198.18.0.9", "proto", "static")
    lab.exec("a", "ip", "route", "add", "198.19.77.0/26", "via", "198.18.0.2", "proto", "80")
    lab.exec("a", "ip", "route", "add", "blackhole", "198.19.78.0/26", "proto", "80")
    a = lab.dataplane("a")
    a.send([*full_state("a", ["b"]), vtep("c", 4)])  # c's routes and v6 VTEP went meanwhile
    wait_until(lambda: block("c", 4) not in lab.routes("a", 4), 15, "c's v4 route removed")
    wait_until(lambda: tunnel_ip("c", 6) not in lab.neighbours("a", 6), 15, "c's v6 neighbour")
    wait_until(lambda: block("c", 6) not in lab.routes("a", 6), 15, "c's v6 route removed")
    wait_until(lambda: "198.19.77.0/26" not in lab.routes("a", 4), 15, "stale DIRECT route")
    assert "198.19.78.0/26" not in lab.routes("a", 4)  # stale blackhole
    assert lab.fdb("a", 6) == {(vtep_mac("b", 6), host_ip("b", 6))}
    assert lab.fdb("a", 4) == {(vtep_mac(n, 4), host_ip(n, 4)) for n in ("b", "c")}
    assert lab.link("a", 4)["ifindex"] == index  # type: ignore[index]  # kept, not recreated
    assert "198.18.77.0/24" in lab.exec("a", "ip", "route", "show", "proto", "static")
    a.send([VTEPRemove("a", 4)])  # this host's VTEP gone: the device and its routes go
    wait_until(lambda: lab.link("a", 4) is None, 15, "v4 device removed")
    wait_until(lambda: block("a", 4) not in lab.routes("a", 4), 15, "blackhole removed")
    assert lab.link("a", 6) is not None


def rx_packets(lab: Lab, host: str) -> int:
    link = lab.link(host, 4)
    return int(link["stats64"]["rx"]["packets"]) if link else 0


def test_vxlan_from_a_host_that_is_no_vtep_is_dropped(lab: Lab) -> None:
    a = lab.dataplane("a")
    a.send(full_state("a", ["b"]))
    wait_until(lambda: block("b", 4) in lab.routes("a", 4), 15, "a programmed")
    dev, mac_a = device_name(4), vtep_mac("a", 4)
    for cmd in (  # c tunnels to a by hand, as a VTEP that a has not heard of
        f"link add {dev} type vxlan id 4096 dstport 4789 local {host_ip('c', 4)} dev eth0"
        " nolearning",
        f"link set {dev} address {vtep_mac('c', 4)} up",
        f"addr add {tunnel_ip('c', 4)}/32 dev {dev}",
        f"neigh add {tunnel_ip('a', 4)} lladdr {mac_a} dev {dev} nud permanent",
        f"route add {block('a', 4)} via {tunnel_ip('a', 4)} dev {dev} onlink",
    ):
        lab.exec("c", "ip", *cmd.split())
    lab.exec("c", "bridge", "fdb", "add", mac_a, "dev", dev, "dst", host_ip("a", 4), "self")

    def ping_from_c() -> bool:
        args = ["ping", "-c1", "-W1", "-I", tunnel_ip("c", 4), workload_ip("a", 4)]
        return lab.ns.exec(lab.hosts["c"], args, check=False).returncode == 0

    before = rx_packets(lab, "a")
    assert not ping_from_c()
    assert rx_packets(lab, "a") == before  # dropped before decapsulation: cali-INPUT
    a.send([vtep("c", 4), RouteUpdate(block("c", 4), "c", RouteType.VXLAN, tunnel_ip("c", 4))])
    wait_until(ping_from_c, 15, "c reaches a's workload once it is a VTEP")
    assert rx_packets(lab, "a") > before


def test_vxlan_disabled_programs_nothing_and_says_so(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device_name(4)
    lab.exec("a", "ip", "link", "add", dev, "type", "vxlan", "id", "4096", "dstport", "4789")
    a = lab.dataplane("a", enabled=False)
    a.send(full_state("a", ["b"]))
    wait_until(lambda: lab.link("a", 4) is None, 15, "leftover device deleted")
    wait_until(lambda: "vxlanEnabled is false" in caplog.text, 5, "the error logged")
    assert lab.routes("a", 4) == {} and lab.routes("a", 6) == {}
    assert lab.link("a", 6) is None and not lab.mtu_file("a").exists()
    assert "all-vxlan-net" not in lab.exec("a", "ipset", "list", "-n")
