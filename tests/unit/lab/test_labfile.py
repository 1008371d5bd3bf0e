"""Lab files: the example parses, and every mistake is reported with the field at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calico.lab.labfile import LabFileError, load_lab, read_lab
from calico.lab.resources import lab_documents, lab_resources
from calico.lab.spec import etcd_address, fabric_interface, parse_ports

EXAMPLE = Path(__file__).parents[3] / "examples" / "lab" / "demo.yaml"
BASE = """
name: t1
fabric: {ipv4: 198.18.0.0/24, ipv6: "2001:db8:18::/64"}
pools: [{cidr: 198.19.0.0/16}, {name: v6, cidr: "2001:db8:19::/112"}]
hosts:
  - {name: host-1, ipv4: 198.18.0.11, ipv6: "2001:db8:18::11"}
  - {name: host-2, ipv4: 198.18.0.12/24}
workloads:
  - {name: w1, host: host-1, ports: [80, udp/53], labels: {app: web}}
border: {ipv4: 198.18.0.1, network: {ipv4: 198.18.200.0/24}}
externals:
  - {name: ext, behind: border, ipv4: 198.18.200.10}
"""


def with_change(change: str) -> str:
    doc = yaml.safe_load(BASE)
    doc.update(yaml.safe_load(change))
    return yaml.safe_dump(doc)


def test_example_lab_file_is_valid() -> None:
    spec = read_lab(EXAMPLE)
    assert [h.name for h in spec.hosts] == ["host-1", "host-2", "host-3"]
    assert spec.node_mesh and spec.border is not None
    assert lab_resources(spec)  # its manifests parse as v3 resources


def test_defaults_and_derived_values() -> None:
    spec = load_lab(BASE)
    assert spec.asNumber == 64512 and spec.node_mesh
    assert etcd_address(spec) == "198.18.0.254"
    assert str(fabric_interface(spec, "198.18.0.11", 4)) == "198.18.0.11/24"
    assert parse_ports(spec.workloads[0].ports) == [("tcp", 80), ("udp", 80), ("udp", 53)]
    assert spec.workloads[0].namespace == "default"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "hosts: [{name: h, ipv4: 10.0.0.1}]",
            "hosts[0].ipv4: '10.0.0.1' is outside the lab's address ranges",
        ),
        (
            "hosts: [{name: h, ipv4: 198.18.1.1}]",
            "hosts[0].ipv4: '198.18.1.1' is not a usable address on the fabric",
        ),
        (
            "hosts: [{name: h, ipv4: 198.18.0.255}]",
            "hosts[0].ipv4: '198.18.0.255' is not a usable address",
        ),
        (
            "hosts: [{name: Host_1, ipv4: 198.18.0.3}]",
            "hosts[0].name: 'Host_1' is not a valid name",
        ),
        ("hosts: [{name: h, ipv4: 198.18.0.3, color: red}]", "hosts[0].color: unknown field"),
        ("hosts: [{name: h}]", "hosts[0].ipv4: required field is missing"),
        ("hosts: []", "hosts: List should have at least 1 item"),
        (
            "hosts: [{name: h, ipv4: 198.18.0.3, routeReflector: abc}]",
            "hosts[0].routeReflector: 'abc' is not a route reflector cluster ID",
        ),
        (
            "hosts: [{name: h, ipv4: 198.18.0.3}, {name: h, ipv4: 198.18.0.4}]",
            "hosts[1].name: name 'h' is used twice",
        ),
        (
            "hosts: [{name: h, ipv4: 198.18.0.3}, {name: g, ipv4: 198.18.0.3}]",
            "hosts[1].ipv4: 198.18.0.3 is already used by hosts[0].ipv4",
        ),
        (
            "hosts: [{name: h, ipv4: 198.18.0.254}]",
            "etcd.ipv4: 198.18.0.254 is already used by hosts[0].ipv4",
        ),
        ("workloads: [{name: w, host: nope}]", "workloads[0].host: 'nope' is not one of the hosts"),
        (
            "workloads: [{name: w, host: host-1, ports: [99999]}]",
            "workloads[0].ports[0]: 99999 is not a port",
        ),
        (
            "workloads: [{name: w, host: host-1, ports: [sctp/5]}]",
            "workloads[0].ports[0]: 'sctp/5' is not a port",
        ),
        (
            "workloads: [{name: w, host: host-1, ipPools: [nope]}]",
            "workloads[0].ipPools[0]: 'nope' is not one of the pools",
        ),
        (
            "pools: [{cidr: 198.19.0.0/16, blockSize: 40}]",
            "pools[0].blockSize: must be between 20 and 32",
        ),
        ("pools: [{cidr: 198.18.0.0/16}]", "pools[0].cidr: 198.18.0.0/16 overlaps 198.18.0.0/24"),
        (
            "pools: [{cidr: 198.19.0.0/16}, {cidr: 198.19.0.0/20}]",
            "pools[1].cidr: 198.19.0.0/20 overlaps 198.19.0.0/16",
        ),
        ("pools: []", "pools: workloads need at least one IP pool"),
        ("asNumber: '12'", "asNumber: Input should be a valid integer"),
        ("name: Bad_Name", "name: 'Bad_Name' is not a valid lab name"),
        ("fabric: {ipv4: '2001:db8::/64'}", "fabric.ipv4: '2001:db8::/64' is not an IPv4 network"),
        (
            "externals: [{name: e, behind: gateway, ipv4: 198.18.200.9}]",
            "externals[0].behind: 'gateway' is not the border router's name",
        ),
        (
            "externals: [{name: e, behind: border, ipv4: 198.18.200.1}]",
            "externals[0].ipv4: '198.18.200.1' is not a free address in 198.18.200.0/24",
        ),
        ("externals: [{name: e}]", "externals[0]: an external needs an ipv4 or ipv6 address"),
        ("resources: [missing.yaml]", "resources[0]: no such file: 'missing.yaml'"),
    ],
)
def test_errors_name_the_field(change: str, message: str) -> None:
    with pytest.raises(LabFileError) as err:
        load_lab(with_change(change), "lab.yaml")
    assert str(err.value).startswith(f"lab.yaml: {message}"), str(err.value)


def test_not_yaml_or_not_a_mapping() -> None:
    with pytest.raises(LabFileError, match=r"lab\.yaml: not valid YAML"):
        load_lab("a: [", "lab.yaml")
    with pytest.raises(LabFileError, match="expected a mapping"):
        load_lab("- 1", "lab.yaml")
    # Found by tests/fuzz: deep nesting was a RecursionError traceback.
    with pytest.raises(LabFileError, match=r"lab\.yaml: not valid YAML: nested too deeply"):
        load_lab("hosts: " + "{a: " * 5000, "lab.yaml")
    # As for manifests: a lone surrogate escape is refused where the YAML is read.
    with pytest.raises(LabFileError, match=r"lab\.yaml: not valid YAML: .* half a surrogate"):
        load_lab('name: "\\ud800"', "lab.yaml")
    with pytest.raises(LabFileError, match=r"nope\.yaml: No such file"):
        read_lab(Path("/nonexistent/nope.yaml"))


def test_resources_for_route_reflectors_and_border() -> None:
    spec = load_lab(with_change(
        "hosts: [{name: rr, ipv4: 198.18.0.2, routeReflector: 224.0.0.1, labels: {rack: a}},"
        " {name: host-1, ipv4: 198.18.0.3}]"
    ))  # fmt: skip
    docs = {(d["kind"], d["metadata"]["name"]): d for d in lab_documents(spec)}
    assert docs[("BGPConfiguration", "default")]["spec"] == {
        "asNumber": 64512, "nodeToNodeMeshEnabled": False,
    }  # fmt: skip
    rr = docs[("Node", "rr")]
    assert rr["metadata"]["labels"] == {"rack": "a", "route-reflector": "true"}
    assert rr["spec"] == {"bgp": {"routeReflectorClusterID": "224.0.0.1"}}
    assert (
        docs[("BGPPeer", "lab-route-reflectors")]["spec"]["peerSelector"]
        == "route-reflector == 'true'"
    )
    assert docs[("BGPPeer", "lab-border-ipv4")]["spec"] == {
        "peerIP": "198.18.0.1",
        "asNumber": 65000,
    }
    assert docs[("IPPool", "lab-ipv4-pool-0")]["spec"] == {"cidr": "198.19.0.0/16"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("colour",), "colour: unknown field"),
        (("fabric", "vlan"), "fabric.vlan: unknown field"),
        (("etcd", "port"), "etcd.port: unknown field"),
        (("pools", 0, "ipipMode"), "pools[0].ipipMode: unknown field"),
        (("hosts", 1, "mtu"), "hosts[1].mtu: unknown field"),
        (("workloads", 0, "image"), "workloads[0].image: unknown field"),
        (("border", "password"), "border.password: unknown field"),
        (("border", "network", "vlan"), "border.network.vlan: unknown field"),
        (("externals", 0, "mac"), "externals[0].mac: unknown field"),
    ],
)
def test_unknown_keys_are_refused_at_every_level(path: tuple[str | int, ...], message: str) -> None:
    doc = yaml.safe_load(BASE)
    doc["etcd"] = {}
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = "x"
    with pytest.raises(LabFileError) as err:
        load_lab(yaml.safe_dump(doc), "lab.yaml")
    assert str(err.value) == f"lab.yaml: {message}"


def test_a_border_on_the_bridged_fabric_needs_its_address() -> None:
    doc = yaml.safe_load(BASE)
    del doc["border"]["ipv4"]
    with pytest.raises(LabFileError, match=r"lab.yaml: border.ipv4: required field is missing"):
        load_lab(yaml.safe_dump(doc), "lab.yaml")
