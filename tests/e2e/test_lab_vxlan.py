"""VXLAN between subnets (examples/lab/vxlan.yaml): two racks of two hosts behind a plain router
that knows no workload address, calico node with networking backend vxlan (no BIRD), pools in
vxlanMode CrossSubnet (IPv4 and IPv6). Every workload reaches every other; a host routes a
same-subnet host's block natively and another subnet's through its VXLAN device (VNI 4096,
UDP 4789), which the router's counters confirm; natOutgoing takes workloads to an external
machine that has no route to the pools; a new block's routes reach every host within a second.
The Always variant encapsulates traffic between hosts of one subnet too."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico.lab.counters import VxlanCounts
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.lab.spec import Workload
from calico.model.vxlan import DEFAULT_PORT, DEFAULT_VNI, OVERHEAD, device_name, vtep_mac

from .conftest import lab_fixture, reaches, require_lab_tools, wait_until

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab" / "vxlan.yaml"
WORKLOADS = ("w-a1", "w-a2", "w-b1", "w-b2")
HOST_OF = {"w-a1": "host-a1", "w-a2": "host-a2", "w-b1": "host-b1", "w-b2": "host-b2"}
HOST_IP = {"host-a1": ("198.18.1.11", "2001:db8:1::11"), "host-a2": ("198.18.1.12", "2001:db8:1::12"),
           "host-b1": ("198.18.2.11", "2001:db8:2::11"), "host-b2": ("198.18.2.12", "2001:db8:2::12")}  # fmt: skip
BLOCK = {4: 26, 6: 122}  # the example pools' block sizes
ROUTE_DEADLINE = 1.0  # seconds from a CNI ADD or DEL until every host's routes follow
PINGS = 5
CHURN_POOL = {"name": "churn", "cidr": "198.19.64.0/24", "blockSize": 28,
              "vxlanMode": "CrossSubnet", "assignmentMode": "Manual"}  # fmt: skip


def lab_text(name: str, mode: str = "CrossSubnet") -> str:
    """The example, renamed, its pools in `mode`, plus a pool only the churn test takes from."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["name"] = name
    for pool in doc["pools"]:
        pool["vxlanMode"] = mode
    doc["pools"].append({**CHURN_POOL, "vxlanMode": mode})
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from lab_fixture(lab_text("e2evxlan"), tmp_path_factory.mktemp("vxlan"))


# -- helpers -------------------------------------------------------------------------------------


def address(lab: Lab, workload: str, version: int) -> str:
    ws = lab.state.workloads[workload]
    found = ws.ipv4 if version == 4 else ws.ipv6
    assert found is not None, f"{workload} has no IPv{version} address"
    return found


def block_of(lab: Lab, workload: str, version: int) -> str:
    ip = address(lab, workload, version)
    return str(ipaddress.ip_network(f"{ip}/{BLOCK[version]}", strict=False))


def routes(lab: Lab, host: str, dst: str) -> list[dict[str, Any]]:
    version = ipaddress.ip_network(dst).version
    out = lab.exec(host, ["ip", f"-{version}", "-j", "route", "show", dst]).stdout
    return [r for r in json.loads(out or "[]") if r.get("dst") == dst]


def tunnel_address(lab: Lab, host: str, version: int) -> str:
    """The host's VTEP address: the global address on its VXLAN device."""
    out = lab.exec(host, ["ip", f"-{version}", "-j", "addr", "show", "dev", device_name(version)])
    infos = [a for link in json.loads(out.stdout or "[]") for a in link.get("addr_info", [])]
    found = [a["local"] for a in infos if a.get("scope") == "global"]
    assert len(found) == 1, (host, version, out.stdout, out.stderr)
    return str(found[0])


def vxlan_route(lab: Lab, remote: str, version: int) -> dict[str, Any]:
    return {"gateway": tunnel_address(lab, remote, version), "dev": device_name(version),
            "onlink": True}  # fmt: skip


def direct_route(remote: str, version: int) -> dict[str, Any]:
    return {"gateway": HOST_IP[remote][version == 6], "dev": "eth0", "onlink": False}


def route_shape(route: dict[str, Any]) -> dict[str, Any]:
    return {"gateway": route.get("gateway"), "dev": route.get("dev"),
            "onlink": "onlink" in route.get("flags", [])}  # fmt: skip


def shapes(lab: Lab, host: str, dst: str) -> list[dict[str, Any]]:
    return [route_shape(r) for r in routes(lab, host, dst)]


def ping(lab: Lab, src: str, dst: str, version: int, count: int = PINGS) -> None:
    argv = ["ping", f"-{version}", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "2"]
    proc = lab.exec(src, [*argv, address(lab, dst, version)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def delta(before: VxlanCounts, after: VxlanCounts) -> tuple[int, int]:
    """(routed, bridged) UDP/4789 packets the router saw in between."""
    return after.routed - before.routed, after.bridged - before.bridged


# -- CrossSubnet -------------------------------------------------------------------------------


def test_every_workload_reaches_every_other(lab: Lab) -> None:
    for ipv6 in (False, True):
        cells = lab.matrix(ipv6=ipv6).cells
        assert len(cells) == 12 and all(cells.values()), (ipv6, cells)
    for src, dst in (("w-a1", "w-b2"), ("w-b1", "w-a2"), ("w-a1", "w-a2")):
        assert lab.probe(src, dst, "icmp").ok and lab.probe(src, dst, "icmp", ipv6=True).ok


def test_no_bird_runs_and_each_host_has_its_vxlan_devices(lab: Lab) -> None:
    for host, (ipv4, ipv6) in HOST_IP.items():
        status = next(h for h in lab.status()["hosts"] if h["name"] == host)
        assert (status["node"], status["felix"], status["bird"], status["bgp"]) == (
            True, True, None, [],
        )  # fmt: skip
        eth0 = json.loads(lab.exec(host, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
        for version, local in ((4, ipv4), (6, ipv6)):
            argv = ["ip", "-d", "-j", "link", "show", device_name(version)]
            link = json.loads(lab.exec(host, argv).stdout)[0]
            data = link["linkinfo"]["info_data"]
            assert link["linkinfo"]["info_kind"] == "vxlan"
            assert (data["id"], data["port"]) == (DEFAULT_VNI, DEFAULT_PORT)
            assert data["local" if version == 4 else "local6"] == local
            assert link["address"] == vtep_mac(host, version)
            assert link["mtu"] == eth0["mtu"] - OVERHEAD[version]


def test_workloads_get_room_for_the_encapsulation(lab: Lab) -> None:
    """Felix writes the smaller tunnel MTU (IPv6's) to the host's MTU file; CNI gives it to
    the workloads' interfaces, both ends."""
    for workload, host in HOST_OF.items():
        eth0 = json.loads(lab.exec(host, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
        expected = eth0["mtu"] - max(OVERHEAD.values())
        assert lab.mtu_file(host).read_text() == str(expected)
        inside = json.loads(lab.exec(workload, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
        assert inside["mtu"] == expected, (workload, inside)


@pytest.mark.parametrize("version", [4, 6])
def test_crosssubnet_routes_same_subnet_natively_and_other_subnets_through_vxlan(
    lab: Lab, version: int
) -> None:
    """host-a1: its rack-mate's block via host-a2 on eth0, the other rack's via their VTEPs
    on the VXLAN device (onlink), its own block a blackhole; each VTEP's MAC is known."""
    assert shapes(lab, "host-a1", block_of(lab, "w-a2", version)) == [
        direct_route("host-a2", version)
    ]
    for workload in ("w-b1", "w-b2"):
        remote = HOST_OF[workload]
        assert shapes(lab, "host-a1", block_of(lab, workload, version)) == [
            vxlan_route(lab, remote, version)
        ]
        argv = ["ip", f"-{version}", "-j", "neigh", "show", "dev", device_name(version)]
        neigh = {n["dst"]: n for n in json.loads(lab.exec("host-a1", argv).stdout)}
        entry = neigh[tunnel_address(lab, remote, version)]
        assert entry["lladdr"] == vtep_mac(remote, version) and "PERMANENT" in entry["state"]
    own = routes(lab, "host-a1", block_of(lab, "w-a1", version))
    assert [r.get("type") for r in own] == ["blackhole"], own


@pytest.mark.parametrize("version", [4, 6])
def test_crosssubnet_encapsulates_only_between_subnets(lab: Lab, version: int) -> None:
    """Same rack: no UDP/4789 packet at the router (neither routed nor bridged); across
    racks: every echo and reply crosses the router inside VXLAN."""
    before = lab.vxlan_counts()
    ping(lab, "w-a1", "w-a2", version)
    ping(lab, "w-b2", "w-b1", version)
    assert delta(before, lab.vxlan_counts()) == (0, 0)
    before = lab.vxlan_counts()
    ping(lab, "w-a1", "w-b1", version)
    routed, bridged = delta(before, lab.vxlan_counts())
    assert routed >= 2 * PINGS and bridged == 0, (routed, bridged)


def test_nat_outgoing_takes_workloads_to_an_external_that_has_no_route_back(lab: Lab) -> None:
    """The external (behind the router, outside every pool) answers the hosts' addresses."""
    for src in ("w-a1", "w-b2"):
        assert lab.probe(src, "ext", "icmp").ok and lab.probe(src, "ext", "icmp", ipv6=True).ok
    assert not lab.probe("ext", "w-a1", "icmp").ok  # nothing routes the pools to it


def hosts_route_block(lab: Lab, block: str, owner: str) -> bool:
    """Every other host routes `block` as CrossSubnet wants: natively within the owner's
    rack, through VXLAN from the other."""
    version = ipaddress.ip_network(block).version
    for host in HOST_IP:
        if host == owner:
            continue
        same_rack = lab.spec.host(host).rack == lab.spec.host(owner).rack
        want = direct_route(owner, version) if same_rack else vxlan_route(lab, owner, version)
        if shapes(lab, host, block) != [want]:
            return False
    return True


def test_routes_follow_a_new_and_a_deleted_workload_within_a_second(lab: Lab) -> None:
    """A workload from the churn pool takes a new block on host-b2: within ROUTE_DEADLINE of
    the CNI ADD every host routes it (host-b1 natively, rack a through VXLAN) and rack a
    reaches it; within ROUTE_DEADLINE of the DEL its route on host-b2 is gone and it is
    unreachable."""
    late = lab.add_workload(Workload(name="late", host="host-b2", ports=[80], ipPools=["churn"]))
    ip = late.ipv4 or ""
    try:
        block = str(ipaddress.ip_network(f"{ip}/{CHURN_POOL['blockSize']}", strict=False))
        took = wait_until(lambda: hosts_route_block(lab, block, "host-b2"), 10,
                          f"every host routes {block}")  # fmt: skip
        assert took <= ROUTE_DEADLINE, f"routes to {block} took {took:.2f}s"
        assert reaches(lab, "w-a1", "late") and reaches(lab, "w-b1", "late")
    finally:
        lab.remove_workload("late")
    gone = wait_until(lambda: "cali" not in lab.exec("host-b2", ["ip", "route", "get", ip]).stdout,
                      10, "host-b2's route to the deleted workload goes")  # fmt: skip
    assert gone <= ROUTE_DEADLINE, f"the deleted workload's route went after {gone:.2f}s"
    print(f"block routed everywhere {took:.2f}s after the ADD; route gone {gone:.2f}s after DEL")
    assert not reaches(lab, "w-a1", ip, port=80)


# -- Always --------------------------------------------------------------------------------------


def test_always_mode_encapsulates_all_traffic_between_hosts(tmp_path: Path) -> None:
    """vxlanMode Always: a rack-mate's block too goes through the VXLAN device, and traffic
    within a rack crosses the rack's bridge as UDP/4789 (between racks, the router)."""
    require_lab_tools()
    spec = load_lab(lab_text("e2evxlana", "Always"), "e2e lab", tmp_path)
    with running_lab(spec, tmp_path / "state", lambda msg: print(f"lab vxlana: {msg}")) as lab:
        for ipv6 in (False, True):
            assert all(lab.matrix(ipv6=ipv6).cells.values())
        for version in (4, 6):
            for workload in ("w-a2", "w-b1"):
                remote = HOST_OF[workload]
                assert shapes(lab, "host-a1", block_of(lab, workload, version)) == [
                    vxlan_route(lab, remote, version)
                ]
            before = lab.vxlan_counts()
            ping(lab, "w-a1", "w-a2", version)
            routed, bridged = delta(before, lab.vxlan_counts())
            assert routed == 0 and bridged >= 2 * PINGS, (version, routed, bridged)
            before = lab.vxlan_counts()
            ping(lab, "w-b2", "w-a1", version)
            routed, bridged = delta(before, lab.vxlan_counts())
            assert routed >= 2 * PINGS and bridged == 0, (version, routed, bridged)
