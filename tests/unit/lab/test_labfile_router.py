"""Lab files with racks joined by a plain router (examples/lab/vxlan.yaml's topology), the
networking backend and VXLAN pools: what they become, and every mistake naming its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calico.lab.counters import ruleset
from calico.lab.lab import Lab
from calico.lab.labfile import LabFileError, load_lab, pool_spec
from calico.lab.report import format_status
from calico.lab.resources import lab_documents
from calico.lab.spec import LabSpec, etcd_address, gateway_address, gateway_address6

EXAMPLE = Path(__file__).parents[3] / "examples" / "lab" / "vxlan.yaml"
BASE = """
name: tr
router: {name: rtr}
pools: [{cidr: 198.19.0.0/16}]
racks:
  - {name: ra, subnet: 198.18.1.0/24, ipv6: "2001:db8:1::/64"}
  - {name: rb, subnet: 198.18.2.0/24, ipv6: "2001:db8:2::/64"}
hosts:
  - {name: h1, rack: ra, ipv4: 198.18.1.11, ipv6: "2001:db8:1::11"}
  - {name: h2, rack: rb, ipv4: 198.18.2.11, ipv6: "2001:db8:2::11"}
externals:
  - {name: ext, ipv4: 198.18.2.50}
"""


def with_change(change: str) -> str:
    doc = yaml.safe_load(BASE)
    doc.update(yaml.safe_load(change))
    return yaml.safe_dump(doc)


def test_a_router_lab_keeps_the_mesh_and_peers_with_nothing_else() -> None:
    spec = load_lab(BASE)
    assert spec.node_mesh and spec.bgp and spec.fabric is None
    ra, rb = spec.racks
    assert (gateway_address(ra), gateway_address6(ra), gateway_address(rb)) == (
        "198.18.1.1", "2001:db8:1::1", "198.18.2.1",
    )  # fmt: skip
    assert etcd_address(spec) == "198.18.1.254"
    docs = lab_documents(spec)
    assert not [d for d in docs if d["kind"] == "BGPPeer"]
    nodes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Node"}
    assert nodes["h2"]["metadata"]["labels"] == {"rack": "rb"}


def test_the_example_and_its_pools_reach_the_ippool_spec_and_the_node_env(tmp_path: Path) -> None:
    """The example's VXLAN pools as the IPPools the lab applies (the model decides whether
    vxlanMode is accepted), and `calico node` gets the networking backend."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    spec = LabSpec.model_validate(doc)
    assert spec.networkingBackend == "vxlan" and not spec.bgp
    assert pool_spec(spec, 0) == {
        "cidr": "198.19.0.0/20", "blockSize": 26, "vxlanMode": "CrossSubnet", "natOutgoing": True,
    }  # fmt: skip
    assert pool_spec(spec, 1)["vxlanMode"] == "CrossSubnet"
    lab = Lab.create(spec, tmp_path / "state")
    assert lab.node_env("host-b1")["CALICO_NETWORKING_BACKEND"] == "vxlan"
    assert set(lab.machines()) >= {"router", "ext", "host-a1"}
    assert lab.addresses("router") == ("198.18.1.1", "2001:db8:1::1")
    assert lab.rack_bridge(spec.racks[1]) == "br-rack1" and lab.rack_gateway(spec.racks[1]) == (
        "router"
    )
    default = LabSpec.model_validate({**doc, "networkingBackend": "bird"})
    assert (
        Lab.create(default, tmp_path / "s2").node_env("host-a1")["CALICO_NETWORKING_BACKEND"]
        == "bird"
    )


def test_the_counting_rules_count_routed_packets_per_bridge_and_bridged_ones() -> None:
    text = ruleset(["br-rack0", "br-rack1"])
    assert 'iifname "br-rack1" oifname != "br-rack1" udp dport 4789 counter' in text
    assert text.count('counter name "vxlan-routed"') == 2
    assert 'udp dport 4789 counter name "vxlan-bridged"' in text.split("table bridge")[1]
    assert "policy accept" in text and "drop" not in text


def test_status_shows_the_routers_counts() -> None:
    doc = {
        "name": "x", "up": True, "etcd": "http://e", "state_dir": "/s", "workloads": [],
        "hosts": [{"name": "h1", "ipv4": "198.18.1.11", "ipv6": None, "node": True,
                   "felix": True, "bird": None, "bgp": []}],
        "router": {"name": "rtr", "vxlan_packets": {"routed": 3, "bridged": 0}},
    }  # fmt: skip
    status = format_status(doc)
    assert "UDP/4789 packets routed between racks 3, bridged within racks 0" in status
    assert "DOWN" not in status and "Established" not in status  # no BIRD with vxlan: "-"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("racks: []", "router: needs racks (the subnets it joins)"),
        ("fabric: {ipv4: 198.18.0.0/24}", "fabric: a lab with a router has no fabric"),
        ("model: as-per-rack", "model: not with a router (it joins plain subnets"),
        ("spines: [{name: s, asNumber: 65100}]", "spines: not with a router"),
        (
            "racks: [{name: ra, subnet: 198.18.1.0/24, tor: {name: t, asNumber: 65001}}]",
            "racks[0].tor: a rack behind the router has no ToR",
        ),
        ("router: {name: h1}", "router.name: name 'h1' is used twice"),
        ("router: {name: r, asNumber: 1}", "router.asNumber: unknown field"),
        ("networkingBackend: none", "networkingBackend: Input should be 'bird' or 'vxlan'"),
        (
            "pools: [{cidr: 198.19.0.0/16, vxlanMode: Sometimes}]",
            "pools[0].vxlanMode: Input should be 'Never', 'Always' or 'CrossSubnet'",
        ),
        ("pools: [{cidr: 198.19.0.0/16, natOutgoing: 1}]", "pools[0].natOutgoing: Input should"),
        (
            "externals: [{name: e, ipv4: 198.18.2.50, gateway: 198.18.2.1}]",
            "externals[0].gateway: the rack's ToR or router is the gateway of an external",
        ),
        ("externals: [{name: e, ipv4: 198.18.5.5}]", "externals[0].ipv4: '198.18.5.5' is not a"),
        ("externals: [{name: e, ipv4: 198.18.2.11}]", "externals[0].ipv4: 198.18.2.11 is already"),
        ("externals: [{name: e, ipv6: '2001:db8:1::9'}]", "externals[0].ipv4: an external in a"),
        (
            "externals: [{name: e, ipv4: 198.18.2.50, ipv6: '2001:db8:1::9'}]",
            "externals[0].ipv6: '2001:db8:1::9' is not in rb's subnet 2001:db8:2::/64",
        ),
        (
            "externals: [{name: e, ipv4: 198.18.1.50, ipv6: '2001:db8:7::9'}]",
            "externals[0].ipv6: '2001:db8:7::9' is not in a rack's ipv6 subnet",
        ),
        (
            "hosts: [{name: h, rack: ra, ipv4: 198.18.1.5, ipv6: '2001:db8:1::5', routeReflector: 1.1.1.1}]",
            "hosts[0].routeReflector: not with racks yet",
        ),
        ("border: {ipv4: 198.18.1.2}", "border: a border router is not supported with racks yet"),
    ],
)
def test_errors_name_the_field(change: str, message: str) -> None:
    with pytest.raises(LabFileError) as err:
        load_lab(with_change(change), "lab.yaml")
    assert str(err.value).startswith(f"lab.yaml: {message}"), str(err.value)


def test_without_a_router_the_fabric_and_tors_are_required() -> None:
    doc = yaml.safe_load(BASE)
    del doc["router"]
    with pytest.raises(LabFileError, match=r"^lab.yaml: fabric: required field is missing"):
        load_lab(yaml.safe_dump(doc), "lab.yaml")
    doc |= {"fabric": {"ipv4": "198.18.0.0/24"}, "model": "as-per-rack",
            "spines": [{"name": "s", "asNumber": 65100}], "externals": []}  # fmt: skip
    with pytest.raises(LabFileError, match=r"^lab.yaml: racks\[0\].tor: every rack needs a ToR"):
        load_lab(yaml.safe_dump(doc), "lab.yaml")
