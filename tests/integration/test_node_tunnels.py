"""calico/node's VXLAN tunnel addresses against a real etcd: allocate, keep, move, release,
and `calicoctl ipam check` agreeing that they are in use."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.ipam.allocator import IPAMClient
from calico.ipam.check import IPAMChecker
from calico.model import parse_resource
from calico.model.base import ObjectMeta
from calico.model.network import Node, NodeBGPSpec, NodeSpec
from calico.model.vxlan import tunnel_handle, vtep_mac
from calico.node.tunnels import TunnelAddresses, TunnelKeeper

pytestmark = pytest.mark.integration
NODE = "host-1"


@pytest.fixture
def ipam(backend: EtcdBackend) -> IPAMClient:
    client = IPAMClient(backend)
    client.resources.ensure_initialized()
    client.resources.create(
        Node(
            metadata=ObjectMeta(name=NODE, labels={"rack": "a"}),
            spec=NodeSpec(bgp=NodeBGPSpec(ipv4Address="198.18.0.11/24")),
        )
    )
    return client


def pool(client: ResourceClient, name: str, cidr: str, **spec: Any) -> None:
    data = {"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}
    resource = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", **data})
    client.apply(resource)


def node(ipam: IPAMClient) -> NodeSpec:
    return ipam.resources.get(Node, NODE).spec


def test_allocates_keeps_and_releases_both_families(ipam: IPAMClient) -> None:
    pool(ipam.resources, "v4", "198.19.0.0/16", vxlanMode="Always")
    pool(ipam.resources, "v6", "2001:db8:1::/64", vxlanMode="CrossSubnet")
    tunnels = TunnelAddresses(ipam, NODE)
    tunnels.reconcile()
    spec = node(ipam)
    assert spec.ipv4VXLANTunnelAddr and spec.ipv6VXLANTunnelAddr
    assert ipaddress.ip_address(spec.ipv4VXLANTunnelAddr) in ipaddress.ip_network("198.19.0.0/16")
    assert spec.vxlanTunnelMACAddr == vtep_mac(NODE, 4)
    assert spec.vxlanTunnelMACAddrV6 == vtep_mac(NODE, 6)
    attr = ipam.allocation_of(spec.ipv4VXLANTunnelAddr)
    assert attr is not None and attr.handle_id == tunnel_handle(NODE, 4)
    assert attr.secondary == {"node": NODE, "type": "vxlanTunnelAddress"}
    attr6 = ipam.allocation_of(spec.ipv6VXLANTunnelAddr)
    assert attr6 is not None and attr6.secondary["type"] == "vxlanV6TunnelAddress"
    assert spec.bgp == NodeBGPSpec(ipv4Address="198.18.0.11/24")  # the rest is untouched

    tunnels.reconcile()  # a second pass keeps everything
    assert node(ipam) == spec
    assert ipam.ips_by_handle(tunnel_handle(NODE, 4)) == [spec.ipv4VXLANTunnelAddr]

    lines: list[str] = []  # `calicoctl ipam check` counts them as the Node's, nothing leaked
    report = IPAMChecker(ipam.store, ipam.resources, lines.append).run("test")
    assert "Check complete; found 0 problems." in lines
    owners = report["allocations"][spec.ipv4VXLANTunnelAddr][0]
    assert owners["inUse"] and f"Node({NODE})" in owners["owners"]

    pool(ipam.resources, "v4", "198.19.0.0/16", vxlanMode="Never")
    tunnels.reconcile()
    spec = node(ipam)
    assert (spec.ipv4VXLANTunnelAddr, spec.vxlanTunnelMACAddr) == (None, None)
    assert spec.ipv6VXLANTunnelAddr is not None
    assert ipam.ips_by_handle(tunnel_handle(NODE, 4)) == []


def test_configured_mac_is_kept(ipam: IPAMClient) -> None:
    def with_mac(n: Node) -> Node:
        n.spec.vxlanTunnelMACAddr = "66:00:00:00:00:01"
        return n

    ipam.resources.update(Node, NODE, None, with_mac)
    pool(ipam.resources, "v4", "198.19.0.0/16", vxlanMode="Always")
    TunnelAddresses(ipam, NODE).reconcile()
    assert node(ipam).vxlanTunnelMACAddr == "66:00:00:00:00:01"


def test_address_moves_when_its_pool_stops_selecting_the_node(ipam: IPAMClient) -> None:
    pool(ipam.resources, "a", "198.19.0.0/24", vxlanMode="Always", nodeSelector="rack == 'a'")
    pool(ipam.resources, "b", "198.19.1.0/24", vxlanMode="Always", nodeSelector="rack == 'b'")
    tunnels = TunnelAddresses(ipam, NODE)
    tunnels.reconcile()
    old = node(ipam).ipv4VXLANTunnelAddr
    assert old is not None and old.startswith("198.19.0.")

    def to_rack_b(n: Node) -> Node:
        n.metadata.labels = {"rack": "b"}
        return n

    ipam.resources.update(Node, NODE, None, to_rack_b)
    tunnels.reconcile()
    new = node(ipam).ipv4VXLANTunnelAddr
    assert new is not None and new.startswith("198.19.1.")
    assert ipam.allocation_of(old) is None  # the old one is released
    assert ipam.ips_by_handle(tunnel_handle(NODE, 4)) == [new]


def test_no_address_without_a_vxlan_pool_allowing_tunnels(ipam: IPAMClient) -> None:
    pool(ipam.resources, "plain", "198.19.0.0/24")
    pool(ipam.resources, "wl", "198.19.1.0/24", vxlanMode="Always", allowedUses=["Workload"])
    pool(ipam.resources, "off", "198.19.2.0/24", vxlanMode="Always", disabled=True)
    TunnelAddresses(ipam, NODE).reconcile()
    assert node(ipam).ipv4VXLANTunnelAddr is None
    assert ipam.blocks() == []


def test_address_taken_by_someone_else_is_replaced(ipam: IPAMClient) -> None:
    """A Node naming an address our handle does not hold (restored from a backup, say)."""
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always")
    ipam.assign_ip("198.19.0.7", "someone-else", NODE)

    def stale(n: Node) -> Node:
        n.spec.ipv4VXLANTunnelAddr = "198.19.0.7"
        return n

    ipam.resources.update(Node, NODE, None, stale)
    TunnelAddresses(ipam, NODE).reconcile()
    new = node(ipam).ipv4VXLANTunnelAddr
    assert new not in (None, "198.19.0.7")
    attr = ipam.allocation_of("198.19.0.7")
    assert attr is not None and attr.handle_id == "someone-else"  # not ours to release


def test_keeper_reacts_to_a_pool_change(ipam: IPAMClient, backend: EtcdBackend) -> None:
    keeper = TunnelKeeper(backend, TunnelAddresses(ipam, NODE), interval=3600, check_interval=0)
    keeper.check()
    assert node(ipam).ipv4VXLANTunnelAddr is None
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always")
    keeper.check()
    assert node(ipam).ipv4VXLANTunnelAddr is not None
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Never")
    keeper.check()
    assert node(ipam).ipv4VXLANTunnelAddr is None


def test_strays_under_the_handle_are_released(ipam: IPAMClient) -> None:
    """An address a crash left under the tunnel handle (allocated, never recorded)."""
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always")
    tunnels = TunnelAddresses(ipam, NODE)
    tunnels.reconcile()
    kept = node(ipam).ipv4VXLANTunnelAddr
    ipam.assign_ip("198.19.0.9", tunnel_handle(NODE, 4), NODE)
    tunnels.reconcile()
    assert node(ipam).ipv4VXLANTunnelAddr == kept
    assert ipam.ips_by_handle(tunnel_handle(NODE, 4)) == [kept]
