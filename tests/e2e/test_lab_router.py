"""Racks joined by a plain router, the topology of examples/lab/vxlan.yaml, here without VXLAN:
networking backend bird (full mesh across the router) and unencapsulated pools. Hosts reach
each other and the external machine through the router; the router knows no workload
address, so workloads reach each other within a rack only, and the external only through
natOutgoing. The router's counters see exactly the UDP/4789 datagrams it routes between racks
and bridges within one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from calico.lab.counters import VxlanCounts
from calico.lab.lab import Lab
from calico.lab.report import format_status
from calico.model.vxlan import DEFAULT_PORT

from .conftest import lab_fixture, reaches, wait_until

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab" / "vxlan.yaml"


def plain_lab() -> str:
    """The VXLAN example with the BGP backend and pools that do not encapsulate."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc |= {"name": "e2erouter", "networkingBackend": "bird"}
    for pool in doc["pools"]:
        del pool["vxlanMode"]
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from lab_fixture(plain_lab(), tmp_path_factory.mktemp("router"))


def test_hosts_and_the_external_reach_each_other_through_the_router(lab: Lab) -> None:
    pairs = [("host-a1", "host-b1"), ("host-b2", "host-a2"), ("host-a1", "ext"), ("ext", "host-b2")]
    for src, dst in pairs:
        for ipv6 in (False, True):
            assert lab.probe(src, dst, "icmp", ipv6=ipv6).ok, (src, dst, ipv6)
    default = json.loads(lab.exec("host-b1", ["ip", "-j", "route", "show", "default"]).stdout)
    assert [r["gateway"] for r in default] == ["198.18.2.1"]
    assert lab.addresses("router") == ("198.18.1.1", "2001:db8:1::1")


def test_the_router_has_no_route_to_the_pools(lab: Lab) -> None:
    routes = lab.exec("router", ["ip", "-j", "route", "show"]).stdout
    assert sorted(r["dst"] for r in json.loads(routes)) == [
        "198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24",
    ]  # fmt: skip
    assert lab.exec("router", ["ip", "route", "get", "198.19.0.1"]).returncode != 0


def test_workloads_reach_each_other_within_a_rack_only(lab: Lab) -> None:
    """Without encapsulation the router drops what it cannot route: the case for VXLAN."""
    cells = lab.matrix().cells
    rack = {"w-a1": "a", "w-a2": "a", "w-b1": "b", "w-b2": "b"}
    assert cells == {(s, d): rack[s] == rack[d] for s, d in cells}, cells


def test_nat_outgoing_takes_workloads_to_the_external(lab: Lab) -> None:
    for src in ("w-a1", "w-b2"):
        assert lab.probe(src, "ext", "icmp").ok
        assert lab.probe(src, "ext", "icmp", ipv6=True).ok


def send_vxlan_port_datagram(lab: Lab, src: str, dst: str, ipv6: bool = False) -> None:
    """One UDP datagram to the VXLAN port (nothing listens: it is only counted)."""
    assert not reaches(lab, src, dst, "udp", DEFAULT_PORT, ipv6)


def counted(lab: Lab, want: VxlanCounts) -> bool:
    return lab.vxlan_counts() == want


@pytest.mark.parametrize("ipv6", [False, True])
def test_the_router_counts_vxlan_port_packets_routed_and_bridged(lab: Lab, ipv6: bool) -> None:
    start = lab.vxlan_counts()
    send_vxlan_port_datagram(lab, "host-a1", "host-b1", ipv6)
    routed = VxlanCounts(start.routed + 1, start.bridged)
    wait_until(lambda: counted(lab, routed), 5, "the router counts one routed datagram")
    send_vxlan_port_datagram(lab, "host-b1", "host-b2", ipv6)
    bridged = VxlanCounts(routed.routed, routed.bridged + 1)
    wait_until(lambda: counted(lab, bridged), 5, "the router counts one bridged datagram")
    assert not reaches(lab, "host-a1", "host-b1", "udp", DEFAULT_PORT + 1, ipv6)  # another port
    assert lab.probe("host-a2", "host-b2", "icmp", ipv6=ipv6).ok
    assert lab.vxlan_counts() == bridged
    status = format_status(lab.status())
    assert f"routed between racks {bridged.routed}, bridged within racks {bridged.bridged}" in (
        status
    ), status
