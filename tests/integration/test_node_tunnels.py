"""calico/node's VXLAN tunnel addresses against a real etcd: allocate, keep, move, release,
and `calicoctl ipam check` agreeing that they are in use; the keeper following pool, Node and
handle changes through its watches, and sending etcd no request while idle."""

from __future__ import annotations

import ipaddress
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calico.backoff import Backoff
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.ipam.allocator import IPAMClient
from calico.ipam.check import IPAMChecker
from calico.model import parse_resource
from calico.model.base import ObjectMeta
from calico.model.network import Node, NodeBGPSpec, NodeSpec
from calico.model.vxlan import tunnel_handle, vtep_mac
from calico.node.tunnels import TunnelAddresses, TunnelKeeper
from calico.testing.etcd_server import EtcdServer
from calico.testing.waiting import wait_until

pytestmark = pytest.mark.integration
NODE = "host-1"
BackendFactory = Callable[..., EtcdBackend]


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


class CountedTunnels(TunnelAddresses):
    """Counts the reconciliation passes the keeper makes."""

    passes = 0

    def reconcile(self) -> None:
        self.passes += 1
        super().reconcile()


@pytest.fixture
def tunnels(ipam: IPAMClient) -> CountedTunnels:
    return CountedTunnels(ipam, NODE)


@pytest.fixture
def keeper(tunnels: CountedTunnels, make_backend: BackendFactory) -> Iterator[TunnelKeeper]:
    """Started; its watches probe etcd only after 300 s of silence, outside every window here."""
    backend = make_backend(watch_idle_timeout=300.0)
    keeper = TunnelKeeper(backend, tunnels, retry=Backoff(0.1, 0.1))
    keeper.start()
    yield keeper
    keeper.stop()


def drive(keeper: TunnelKeeper, seconds: float) -> None:
    """Check every 0.2 s, as the node's supervision loop does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        keeper.check()
        time.sleep(0.2)


def follow(keeper: TunnelKeeper, done: Callable[[], object], what: str) -> float:
    """Seconds until `done`, checking as the node does."""
    return wait_until(lambda: (keeper.check(), done())[1], timeout=10.0, what=what, interval=0.2)


def settle(keeper: TunnelKeeper, tunnels: CountedTunnels) -> None:
    """Until the passes our own writes triggered are done: a second of checks with no pass."""

    def quiet() -> bool:
        before = tunnels.passes
        drive(keeper, 1.0)
        return tunnels.passes == before

    wait_until(quiet, timeout=20.0, what="a second without a pass")


def test_keeper_follows_pool_node_and_handle_changes(
    ipam: IPAMClient, tunnels: CountedTunnels, keeper: TunnelKeeper
) -> None:
    keeper.check()
    assert node(ipam).ipv4VXLANTunnelAddr is None
    waited = []
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always", nodeSelector="rack == 'a'")
    waited.append(follow(keeper, lambda: node(ipam).ipv4VXLANTunnelAddr, "address allocated"))
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Never", nodeSelector="rack == 'a'")
    waited.append(follow(keeper, lambda: not node(ipam).ipv4VXLANTunnelAddr, "address cleared"))
    assert ipam.ips_by_handle(tunnel_handle(NODE, 4)) == []
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always", nodeSelector="rack == 'a'")
    waited.append(follow(keeper, lambda: node(ipam).ipv4VXLANTunnelAddr, "address again"))

    def to_rack_b(n: Node) -> Node:
        n.metadata.labels = {"rack": "b"}
        return n

    ipam.resources.update(Node, NODE, None, to_rack_b)  # the pool no longer selects the Node
    waited.append(follow(keeper, lambda: not node(ipam).ipv4VXLANTunnelAddr, "cleared by label"))
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always")
    waited.append(follow(keeper, lambda: node(ipam).ipv4VXLANTunnelAddr, "allocated by selector"))

    settle(keeper, tunnels)  # so that only the handle's change can start the next pass
    address = node(ipam).ipv4VXLANTunnelAddr
    assert address is not None
    ipam.release_ips([address])  # released behind the node's back: only the handle says so
    handle = tunnel_handle(NODE, 4)

    def recorded_and_held() -> bool:
        current = node(ipam).ipv4VXLANTunnelAddr
        return current is not None and ipam.ips_by_handle(handle) == [current]

    waited.append(follow(keeper, recorded_and_held, "address re-allocated"))
    print("seconds from each change to the Node following it:", [round(w, 2) for w in waited])


def unary_requests(server: EtcdServer) -> float:
    """Every unary gRPC call etcd has handled (ranges, txns, puts, status...): all but watches."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{server.endpoint}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    prefix = "grpc_server_handled_total{"
    return sum(float(x.split()[1]) for x in lines if x.startswith(prefix) and "unary" in x)


def test_idle_keeper_sends_etcd_nothing(
    ipam: IPAMClient, tunnels: CountedTunnels, keeper: TunnelKeeper, etcd_server: EtcdServer
) -> None:
    pool(ipam.resources, "v4", "198.19.0.0/24", vxlanMode="Always")
    follow(keeper, lambda: node(ipam).ipv4VXLANTunnelAddr, "address allocated")
    settle(keeper, tunnels)
    before = unary_requests(etcd_server)
    drive(keeper, 10.0)
    assert unary_requests(etcd_server) - before == 0

    passes = tunnels.passes
    other = "host-10"  # its Node and handle keys extend ours: watched, and told apart
    ipam.resources.create(Node(metadata=ObjectMeta(name=other), spec=NodeSpec()))
    ipam.assign_ip("198.19.0.20", tunnel_handle(other, 4), other)
    drive(keeper, 2.0)
    assert tunnels.passes == passes
    pool(ipam.resources, "v6", "2001:db8:1::/64", vxlanMode="Always")
    follow(keeper, lambda: node(ipam).ipv6VXLANTunnelAddr, "IPv6 address allocated")


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
