"""L3-fabric lab files: racks, ToRs and spines parse into the right resources and router
configs, and every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calico.lab import frr
from calico.lab.fabric import FabricOps
from calico.lab.labfile import LabFileError, load_lab, read_lab
from calico.lab.report import format_status
from calico.lab.resources import lab_documents
from calico.lab.spec import (
    border_links,
    etcd_address,
    fabric_links,
    gateway_address,
    gateway_address6,
)

EXAMPLE = Path(__file__).parents[3] / "examples" / "lab" / "l3-fabric.yaml"
BASE = """
name: t3
model: as-per-rack
fabric: {ipv4: 198.18.0.0/24}
pools: [{cidr: 198.19.0.0/16}]
spines: [{name: sp1, asNumber: 65100}, {name: sp2, asNumber: 65101}]
racks:
  - {name: r1, subnet: 198.18.1.0/24, tor: {name: tor1, asNumber: 65001}}
  - {name: r2, subnet: 198.18.2.0/24, tor: {name: tor2, ipv4: 198.18.2.254, asNumber: 65002}}
hosts:
  - {name: h1, rack: r1, ipv4: 198.18.1.11}
  - {name: h2, rack: r2, ipv4: 198.18.2.11}
"""


def with_change(change: str) -> str:
    doc = yaml.safe_load(BASE)
    doc.update(yaml.safe_load(change))
    return yaml.safe_dump(doc)


def test_example_and_derived_values() -> None:
    example = read_lab(EXAMPLE)
    assert example.model == "as-per-rack" and not example.node_mesh
    assert etcd_address(example) == "198.18.9.10"
    spec = load_lab(BASE)
    r1, r2 = spec.racks
    assert gateway_address(r1) == "198.18.1.1" and gateway_address(r2) == "198.18.2.254"
    assert etcd_address(spec) == "198.18.1.254"  # the first rack's last usable address
    links = [(r.name, s.name, t, a) for r, s, t, a in fabric_links(spec)]
    assert links == [
        ("r1", "sp1", "198.18.0.0/31", "198.18.0.1/31"),
        ("r1", "sp2", "198.18.0.2/31", "198.18.0.3/31"),
        ("r2", "sp1", "198.18.0.4/31", "198.18.0.5/31"),
        ("r2", "sp2", "198.18.0.6/31", "198.18.0.7/31"),
    ]
    assert spec.host_as(spec.hosts[0]) == 65001  # as-per-rack: the rack's AS


def test_resources_peer_each_rack_with_its_tor_and_turn_the_mesh_off() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(load_lab(BASE))}
    assert docs[("BGPConfiguration", "default")]["spec"]["nodeToNodeMeshEnabled"] is False
    assert docs[("Node", "h2")]["metadata"]["labels"] == {"rack": "r2"}
    assert docs[("BGPPeer", "lab-tor-r2")]["spec"] == {
        "nodeSelector": "rack == 'r2'", "peerIP": "198.18.2.254", "asNumber": 65002,
    }  # fmt: skip


def test_a_tor_password_becomes_a_secret_ref_and_an_frr_neighbor_password() -> None:
    racks = (
        "racks: [{name: r1, subnet: 198.18.1.0/24,"
        " tor: {name: tor1, asNumber: 65001, password: s3cr#t}}]"
    )
    spec = load_lab(with_change(racks + "\nhosts: [{name: h1, rack: r1, ipv4: 198.18.1.11}]"))
    docs = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(spec)}
    ref = {"name": "lab-tor-r1", "key": "password"}
    assert docs[("BGPPeer", "lab-tor-r1")]["spec"]["password"] == {"secretKeyRef": ref}
    host, spine = (
        frr.Neighbor("198.18.1.11", 65001, password="s3cr#t"),
        frr.Neighbor("198.18.0.1", 1),
    )
    config = frr.bgpd_config("tor1", 65001, "198.18.1.1", [host, spine], [])
    assert " neighbor 198.18.1.11 password s3cr#t" in config.splitlines()
    assert "neighbor 198.18.0.1 password" not in config
    no_password = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(load_lab(BASE))}
    assert "password" not in no_password[("BGPPeer", "lab-tor-r1")]["spec"]


def test_a_tor_loopback_is_the_peer_ip_reachable_by_the_rack_address() -> None:
    racks = (
        "racks: [{name: r1, subnet: 198.18.1.0/24,"
        " tor: {name: tor1, asNumber: 65001, loopback: 198.18.100.1}}]"
    )
    spec = load_lab(with_change(racks + "\nhosts: [{name: h1, rack: r1, ipv4: 198.18.1.11}]"))
    docs = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(spec)}
    peer = docs[("BGPPeer", "lab-tor-r1")]["spec"]
    assert (peer["peerIP"], peer["reachableBy"]) == ("198.18.100.1", "198.18.1.1")
    host = frr.Neighbor("198.18.1.11", 65011, update_source="198.18.100.1")
    config = frr.bgpd_config("tor1", 65001, "198.18.1.1", [host], []).splitlines()
    assert " neighbor 198.18.1.11 update-source 198.18.100.1" in config
    assert " neighbor 198.18.1.11 disable-connected-check" in config
    plain = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(load_lab(BASE))}
    assert "reachableBy" not in plain[("BGPPeer", "lab-tor-r1")]["spec"]


EXAMPLE_V6 = EXAMPLE.with_name("l3-fabric-v6.yaml")
DUAL = with_change(
    "{fabric: {ipv4: 198.18.0.0/24, ipv6: '2001:db8:ff::/64'},"
    " pools: [{cidr: 198.19.0.0/16}, {cidr: '2001:db8:100::/112'}],"
    " racks: [{name: r1, subnet: 198.18.1.0/24, ipv6: '2001:db8:1::/64',"
    "          tor: {name: tor1, asNumber: 65001, password: pw, loopback: 198.18.100.1}},"
    "         {name: r2, subnet: 198.18.2.0/24, ipv6: '2001:db8:2::/64',"
    "          tor: {name: tor2, asNumber: 65002}}],"
    " hosts: [{name: h1, rack: r1, ipv4: 198.18.1.11, ipv6: '2001:db8:1::11'},"
    "         {name: h2, rack: r2, ipv4: 198.18.2.11, ipv6: '2001:db8:2::11'}]}"
)


def test_ipv6_racks_links_peers_and_tor_config() -> None:
    """A rack's IPv6 subnet: the ToR takes its first address, the hosts peer with it there
    (never over the IPv4 loopback), each ToR-spine link gets a /127 of fabric.ipv6."""
    assert read_lab(EXAMPLE_V6).racks[0].ipv6 == "2001:db8:1::/64"
    spec = load_lab(DUAL)
    r1, r2 = spec.racks
    assert (gateway_address6(r1), gateway_address6(r2)) == ("2001:db8:1::1", "2001:db8:2::1")
    links = [(r.name, s.name, t, a) for r, s, t, a in fabric_links(spec, 6)]
    assert links[:2] == [
        ("r1", "sp1", "2001:db8:ff::/127", "2001:db8:ff::1/127"),
        ("r1", "sp2", "2001:db8:ff::2/127", "2001:db8:ff::3/127"),
    ]
    assert fabric_links(load_lab(BASE), 6) == []
    docs = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(spec)}
    assert docs[("BGPPeer", "lab-tor-r1-ipv6")]["spec"] == {
        "nodeSelector": "rack == 'r1'", "peerIP": "2001:db8:1::1", "asNumber": 65001,
        "password": {"secretKeyRef": {"name": "lab-tor-r1", "key": "password"}},
    }  # fmt: skip
    assert ("BGPPeer", "lab-tor-r1-ipv6") not in {
        (d["kind"], d["metadata"]["name"]) for d in lab_documents(load_lab(BASE))
    }
    ops = FabricOps.__new__(FabricOps)
    ops.spec = spec
    tor = FabricOps.router_config(ops, "tor1").split("\n address-family ipv6 unicast\n")[1]
    for line in (
        "  network 2001:db8:1::/64",
        "  neighbor 2001:db8:1::11 activate",
        "  neighbor 2001:db8:1::11 route-reflector-client",
        "  neighbor 2001:db8:1::11 next-hop-self",
        "  neighbor 2001:db8:ff::1 activate",
    ):
        assert line in tor.splitlines(), tor
    assert "neighbor 2001:db8:1::11 update-source" not in FabricOps.router_config(ops, "tor1")
    spine = FabricOps.router_config(ops, "sp1")
    assert " neighbor 2001:db8:ff:: remote-as 65001" in spine.splitlines()
    assert " neighbor 2001:db8:ff::4 remote-as 65002" in spine.splitlines()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "hosts: [{name: h1, rack: r1, ipv4: 198.18.1.11, ipv6: '2001:db8:2::11'}]",
            "hosts[0].ipv6: '2001:db8:2::11' is not in r1's subnet 2001:db8:1::/64",
        ),
        (
            "hosts: [{name: h1, rack: r1, ipv4: 198.18.1.11, ipv6: '2001:db8:1::1'}]",
            "hosts[0].ipv6: 2001:db8:1::1 is already used by racks[0].ipv6 (its gateway)",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, ipv6: '2001:db8:ff::/64',"
            " tor: {name: tor1, asNumber: 65001}}]",
            "racks[0].ipv6: 2001:db8:ff::/64 overlaps fabric.ipv6",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, ipv6: '2001:db8:1::/124',"
            " tor: {name: tor1, asNumber: 65001}}]",
            "racks[0].ipv6: '2001:db8:1::/124' is not an IPv6 network of /120 or more",
        ),
        (
            "fabric: {ipv4: 198.18.0.0/24, ipv6: '2001:db8:ff::/127'}",
            "fabric.ipv6: 2001:db8:ff::/127 is too small for a /127 per ToR-spine link",
        ),
        ("pools: [{cidr: '2001:db8:1::/112'}]", "pools[0].cidr: 2001:db8:1::/112 overlaps"),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, ipv6: '2001:db8:1::/64',"
            " tor: {name: tor1, asNumber: 65001}},"
            " {name: r2, subnet: 198.18.2.0/24, tor: {name: tor2, asNumber: 65002}}]",
            "racks[1].ipv6: racks[0] has ipv6: every rack needs it (or none)",
        ),
        (
            "hosts: [{name: h1, rack: r1, ipv4: 198.18.1.11}]",
            "hosts[0].ipv6: r1 has ipv6: every host in it needs an ipv6 address",
        ),
    ],
)
def test_ipv6_rack_errors_name_the_field(change: str, message: str) -> None:
    doc = yaml.safe_load(DUAL)
    doc.update(yaml.safe_load(change))
    with pytest.raises(LabFileError) as err:
        load_lab(yaml.safe_dump(doc), "lab.yaml")
    assert str(err.value).startswith(f"lab.yaml: {message}"), str(err.value)


def test_as_per_host() -> None:
    spec = load_lab(with_change(
        "{model: as-per-host, hosts: [{name: h1, rack: r1, ipv4: 198.18.1.11, asNumber: 65011}]}"
    ))  # fmt: skip
    assert spec.host_as(spec.hosts[0]) == 65011


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("model: null", "model: racks need a model: as-per-rack or as-per-host"),
        ("model: as-per-pod", "model: Input should be 'as-per-rack' or 'as-per-host'"),
        ("spines: []", "spines: racks need one or two spines"),
        (
            "spines: [{name: a, asNumber: 1}, {name: b, asNumber: 2}, {name: c, asNumber: 3}]",
            "spines: List should have at most 2 items",
        ),
        ("mesh: true", "mesh: the node-to-node mesh is off in an L3 fabric"),
        ("border: {ipv4: 198.18.1.2}", "border.ipv4: in an L3 fabric the border's addresses"),
        ("border: {asNumber: 65100}", "border.asNumber: must differ from spines[0]'s AS (eBGP)"),
        ("border: {asNumber: 65002}", "border.asNumber: is racks[1]'s ToR AS too"),
        (
            "border: {network: {ipv4: 198.18.2.0/25}}",
            "border.network.ipv4: 198.18.2.0/25 overlaps racks[1]'s subnet",
        ),
        (
            "border: {network: {ipv6: '2001:db8:200::/64'}}",
            "border.network.ipv6: needs fabric.ipv6 (the border-spine /127s)",
        ),
        (
            "{border: {network: {ipv4: 198.18.200.0/24}}, fabric: {ipv4: 198.18.0.0/29}}",
            "fabric.ipv4: 198.18.0.0/29 is too small for a /31 per ToR-spine and border-spine",
        ),
        (
            "externals: [{name: x, behind: nope, ipv4: 198.18.200.5}]",
            "externals[0].behind: 'nope' is not the border router's name",
        ),
        (
            "externals: [{name: x, ipv4: 198.18.2.5, gateway: 198.18.2.254}]",
            "externals[0].gateway: the rack's ToR or router is the gateway of an external",
        ),
        ("externals: [{name: x, ipv4: 198.18.7.5}]", "externals[0].ipv4: '198.18.7.5' is not a"),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24,"
            " tor: {name: t1, asNumber: 65001, loopback6: '2001:db8:100::1'}}]",
            "racks[0].tor.loopback6: needs racks[0].ipv6",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24,"
            " tor: {name: t1, asNumber: 65001, loopback6: 198.18.100.1}}]",
            "racks[0].tor.loopback6: '198.18.100.1' is not an IPv6 address",
        ),
        ("fabric: {ipv4: 198.18.0.0/30}", "fabric.ipv4: 198.18.0.0/30 is too small"),
        (
            "fabric: {ipv4: 198.18.0.0/24, ipv6: '2001:db8::/64'}",
            "fabric.ipv6: no rack has an ipv6 subnet",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, ipv6: '2001:db8:1::/64',"
            " tor: {name: t, asNumber: 1}}]",
            "racks[0].ipv6: needs fabric.ipv6 (the ToR-spine /127s)",
        ),
        (
            "hosts: [{name: h, rack: r1, ipv4: 198.18.1.5, ipv6: '2001:db8:1::5'}]",
            "hosts[0].ipv6: needs racks[0].ipv6",
        ),
        (
            "pools: [{cidr: 198.19.0.0/16}, {cidr: '2001:db8:100::/112'}]",
            "pools[1].cidr: an IPv6 pool in a lab with racks needs racks[].ipv6",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.0.128/25, tor: {name: t, asNumber: 1}}]",
            "racks[0].subnet: 198.18.0.128/25 overlaps fabric.ipv4",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, tor: {name: t, asNumber: 65100}}]",
            "spines[0].asNumber: must differ from r1's ToR AS (eBGP)",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, tor: {name: h1, asNumber: 1}}]",
            "racks[0].tor.name: name 'h1' is used twice",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, tor: {name: t, asNumber: 1, vlan: 2}}]",
            "racks[0].tor.vlan: unknown field",
        ),
        ("hosts: [{name: h, rack: r1, ipv4: 198.18.2.11}]", "hosts[0].ipv4: '198.18.2.11' is not"),
        ("hosts: [{name: h, rack: r1, ipv4: 198.18.7.1}]", "hosts[0].ipv4: '198.18.7.1' is not a"),
        ("hosts: [{name: h, rack: r1, ipv4: 198.18.1.1}]", "hosts[0].ipv4: 198.18.1.1 is already"),
        ("hosts: [{name: h, ipv4: 198.18.1.5}]", "hosts[0].rack: every host names its rack"),
        ("hosts: [{name: h, rack: r9, ipv4: 198.18.1.5}]", "hosts[0].rack: 'r9' is not one of"),
        (
            "hosts: [{name: h, rack: r1, ipv4: 198.18.1.5, asNumber: 7}]",
            "hosts[0].asNumber: in model as-per-rack a host takes its rack's AS",
        ),
        (
            "{model: as-per-host, hosts: [{name: h, rack: r1, ipv4: 198.18.1.5}]}",
            "hosts[0].asNumber: model as-per-host needs an AS per host",
        ),
        (
            "hosts: [{name: h, rack: r1, ipv4: 198.18.1.5, routeReflector: 1.1.1.1}]",
            "hosts[0].routeReflector: with racks the ToRs are the route reflectors",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, tor: {name: t1, asNumber: 65001}},"
            " {name: r2, subnet: 198.18.2.0/24, tor: {name: t2, asNumber: 65001}}]",
            "racks[1].tor.asNumber: is racks[0]'s AS too (one AS per rack)",
        ),
        (
            "{model: as-per-host, hosts: [{name: h, rack: r1, ipv4: 198.18.1.5, asNumber: 65002}]}",
            "hosts[0].asNumber: 65002 is a ToR's, spine's or the border's AS",
        ),
        (
            "{model: as-per-host, hosts: [{name: h, rack: r1, ipv4: 198.18.1.5, asNumber: 7},"
            " {name: g, rack: r2, ipv4: 198.18.2.5, asNumber: 7}]}",
            "hosts[1].asNumber: 7 is hosts[0]'s AS too (as-per-host: one per host)",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/30, tor: {name: t1, asNumber: 65001}}]",
            "racks[0].subnet: '198.18.1.0/30' is not an IPv4 network of /29 or more",
        ),
        (
            "hosts: [{name: h, rack: r1, ipv4: 198.18.1.5, labels: {rack: x}}]",
            "hosts[0].labels: 'rack' is set from the host's rack",
        ),
        ("etcd: {ipv4: 198.18.5.5}", "etcd.ipv4: '198.18.5.5' is not a usable address in a"),
        ("pools: [{cidr: 198.18.2.0/25}]", "pools[0].cidr: 198.18.2.0/25 overlaps 198.18.2.0/24"),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24,"
            " tor: {name: t1, asNumber: 65001, password: 'two words'}}]",
            "racks[0].tor.password: must be 1 to 80 printable ASCII characters without spaces",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24, tor: {name: t1, asNumber: 65001,"
            f" password: {'x' * 81}}}}}]",
            "racks[0].tor.password: must be 1 to 80",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24,"
            " tor: {name: t1, asNumber: 65001, loopback: 198.18.1.200}}]",
            "racks[0].tor.loopback: 198.18.1.200 is in a rack subnet, the fabric or a pool",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24,"
            " tor: {name: t1, asNumber: 65001, loopback: 198.19.0.1}}]",
            "racks[0].tor.loopback: 198.19.0.1 is in a rack subnet, the fabric or a pool",
        ),
        (
            "racks: [{name: r1, subnet: 198.18.1.0/24,"
            " tor: {name: t1, asNumber: 65001, loopback: 198.18.100.1}},"
            " {name: r2, subnet: 198.18.2.0/24,"
            " tor: {name: t2, asNumber: 65002, loopback: 198.18.100.1}}]",
            "racks[1].tor.loopback: 198.18.100.1 is already racks[0].tor.loopback's",
        ),
    ],
)
def test_errors_name_the_field(change: str, message: str) -> None:
    with pytest.raises(LabFileError) as err:
        load_lab(with_change(change), "lab.yaml")
    assert str(err.value).startswith(f"lab.yaml: {message}"), str(err.value)


def test_racks_keys_need_racks() -> None:
    plain = "name: p\nfabric: {ipv4: 198.18.0.0/24}\nhosts: [{name: h, ipv4: 198.18.0.2}]\n"
    for extra, message in (
        ("model: as-per-rack", "model: needs racks"),
        ("spines: [{name: s, asNumber: 1}]", "spines: needs racks"),
    ):
        with pytest.raises(LabFileError, match=message):
            load_lab(plain + extra, "lab.yaml")
    with pytest.raises(LabFileError, match=r"hosts\[0\].rack: needs racks"):
        load_lab(plain.replace("198.18.0.2}", "198.18.0.2, rack: r}"), "lab.yaml")


def test_status_shows_each_hosts_tor_session_and_the_routers() -> None:
    doc = {
        "name": "x", "up": True, "etcd": "http://e", "state_dir": "/s", "workloads": [],
        "hosts": [{"name": "h1", "ipv4": "198.18.1.11", "ipv6": None, "node": True,
                   "felix": True, "bird": True,
                   "bgp": [{"peer": "Node_198_18_1_1", "state": "up", "info": "Established"}],
                   "tor": {"name": "tor1", "info": "Established"}}],
        "routers": [{"name": "tor1", "role": "ToR of r1", "asNumber": 65001,
                     "bgp": {"198.18.0.1": "Established", "198.18.0.3": "Active"}}],
    }  # fmt: skip
    status = format_status(doc)
    header, row = status.splitlines()[2:4]
    assert header.endswith("TOR SESSION") and row.endswith("tor1 Established")
    assert (
        "router tor1 (ToR of r1, AS 65001): 1/2 BGP sessions Established; 198.18.0.3: Active"
        in status
    )


def test_status_shows_the_ipv6_tor_session_when_the_rack_has_one() -> None:
    host = {"name": "h1", "ipv4": "198.18.1.11", "ipv6": "2001:db8:1::11", "node": True,
            "felix": True, "bird": True, "bgp": [],
            "tor": {"name": "tor1", "info": "Established", "info6": "Active"}}  # fmt: skip
    doc = {"name": "x", "up": True, "etcd": "e", "state_dir": "/s", "workloads": [],
           "hosts": [host]}  # fmt: skip
    assert format_status(doc).splitlines()[3].endswith("tor1 Established, IPv6 Active")


def test_a_tor_loopback6_is_the_ipv6_peer_ip_reachable_by_the_rack_address() -> None:
    doc = yaml.safe_load(DUAL)
    doc["racks"][0]["tor"] = {"name": "tor1", "asNumber": 65001, "loopback6": "2001:db8:fe::1"}
    spec = load_lab(yaml.safe_dump(doc))
    docs = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(spec)}
    peer = docs[("BGPPeer", "lab-tor-r1-ipv6")]["spec"]
    assert (peer["peerIP"], peer["reachableBy"]) == ("2001:db8:fe::1", "2001:db8:1::1")
    assert "reachableBy" not in docs[("BGPPeer", "lab-tor-r1")]["spec"]
    ops = FabricOps.__new__(FabricOps)
    ops.spec = spec
    config = FabricOps.router_config(ops, "tor1").splitlines()
    assert " neighbor 2001:db8:1::11 update-source 2001:db8:fe::1" in config
    assert " neighbor 198.18.1.11 update-source 2001:db8:fe::1" not in config


BORDERED = with_change(
    "{border: {name: edge, asNumber: 65000, network: {ipv4: 198.18.200.0/24}},"
    " externals: [{name: client, behind: edge, ipv4: 198.18.200.10},"
    "             {name: ext, ipv4: 198.18.2.50}]}"
)


def test_a_border_router_on_the_spines() -> None:
    """Linked to each spine after the ToRs' links, eBGP with the spines (not the hosts), its
    network advertised; externals behind it or in a rack."""
    spec = load_lab(BORDERED)
    assert [(s.name, a, b) for s, a, b in border_links(spec)] == [
        ("sp1", "198.18.0.8/31", "198.18.0.9/31"),
        ("sp2", "198.18.0.10/31", "198.18.0.11/31"),
    ]
    assert len(fabric_links(spec)) == 4 and border_links(spec, 6) == []
    assert not [d for d in lab_documents(spec) if "edge" in d["metadata"]["name"]]
    ops = FabricOps.__new__(FabricOps)
    ops.spec = spec
    assert ops.routers() == ["tor1", "tor2", "sp1", "sp2", "edge"]
    border = ops.router_config("edge").splitlines()
    for line in (" neighbor 198.18.0.9 remote-as 65100", " neighbor 198.18.0.11 remote-as 65101",
                 "  network 198.18.200.0/24", " bgp router-id 198.18.0.8"):  # fmt: skip
        assert line in border, border
    assert " neighbor 198.18.0.8 remote-as 65000" in ops.router_config("sp1").splitlines()
