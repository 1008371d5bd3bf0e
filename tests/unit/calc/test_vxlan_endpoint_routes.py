"""Host routes for addresses outside their endpoint's blocks, through the whole graph:
addresses borrowed from another host's block and floating IPs (NAT external IPs) in a VXLAN
pool get a /32 (/128) to the endpoint's host, DIRECT or via its VTEP as for blocks (pure)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from calico.calc import messages as m
from calico.calc.graph import CalcGraph
from calico.calc.messages import RouteType
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.sync import SyncStatus

from .test_calc_graph import HOST
from .test_vxlan_routes import (
    BLOCKS,
    CROSS,
    FAR,
    FAR_BLOCK,
    LOCAL_BLOCK,
    ME,
    NEVER,
    OTHER,
    PEER,
    PEER_BLOCK,
    THIRD,
    VX,
    node,
    pool,
)

FIP = "198.19.200.10"


def endpoint(
    pod: str, host: str, *ips: str, nats: dict[str, str] | None = None, orch: str = "k8s"
) -> Resource:
    """A workload endpoint on `host`; `nats`: internal -> external (floating) IP."""
    spec: dict[str, Any] = {
        "node": host, "orchestrator": orch, "pod": pod, "workload": pod, "endpoint": "eth0",
        "interfaceName": f"cali{pod}"[:15], "ipNetworks": list(ips),
        "ipNATs": [{"internalIP": i, "externalIP": e} for i, e in (nats or {}).items()],
    }  # fmt: skip
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
           "metadata": {"namespace": "apps"}, "spec": spec}  # fmt: skip
    return parse_resource(doc)


def vx_with(floating_ips: bool) -> VX:
    vx = VX()
    vx.graph = CalcGraph(HOST, vx.dp, floating_ips)
    vx.graph.on_status(SyncStatus.IN_SYNC)
    return vx


def cross_subnet_cluster(floating_ips: bool = False) -> VX:
    vx = vx_with(floating_ips)
    vx.put(ME, PEER, FAR, CROSS)
    vx.blocks(BLOCKS)
    return vx


def test_borrowed_addresses_are_routed_to_their_endpoints_host() -> None:
    vx = cross_subnet_cluster()
    far_in_peer = endpoint("a", THIRD, "198.19.1.5")  # in host-2's block
    peer_in_far = endpoint("b", OTHER, "198.19.2.7")  # in host-3's block
    far_in_mine = endpoint("c", THIRD, "198.19.0.9")  # in this host's (blackholed) block
    vx.put(far_in_peer, peer_in_far, far_in_mine)
    assert vx.route("198.19.1.5/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)
    assert vx.route("198.19.2.7/32") == (RouteType.DIRECT, "198.18.0.2", OTHER)
    assert vx.route("198.19.0.9/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)
    assert vx.route(LOCAL_BLOCK) == (RouteType.BLACKHOLE, "", HOST)  # the rest of it
    vx.delete(far_in_peer)
    assert vx.last() == [m.RouteRemove("198.19.1.5/32")]


def test_addresses_in_their_own_hosts_block_and_local_endpoints_get_no_host_route() -> None:
    vx = cross_subnet_cluster()
    before = dict(vx.dp.routes)
    vx.put(endpoint("a", THIRD, "198.19.2.3"), endpoint("b", HOST, "198.19.2.8"))
    assert vx.dp.routes == before  # the endpoint manager routes local ones to their interface
    vx.put(endpoint("c", THIRD, "198.20.0.1"))  # in no pool: not VXLAN's business
    assert vx.dp.routes == before


def test_an_address_follows_its_block_changing_hands() -> None:
    vx = cross_subnet_cluster()
    vx.put(endpoint("a", THIRD, "198.19.1.5"))
    vx.blocks({PEER_BLOCK: THIRD})  # now the endpoint's host's own block: no /32
    assert vx.route("198.19.1.5/32") is None
    assert vx.route(PEER_BLOCK) == (RouteType.VXLAN, "198.19.2.1", THIRD)
    vx.blocks({PEER_BLOCK: OTHER})
    assert vx.route("198.19.1.5/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)
    vx.blocks({PEER_BLOCK: None})  # no block at all: the endpoint still has the address
    assert set(vx.dp.routes) == {LOCAL_BLOCK, FAR_BLOCK, "198.19.1.5/32"}


def test_host_routes_follow_the_endpoints_node_and_this_hosts_subnet() -> None:
    vx = cross_subnet_cluster()
    vx.put(endpoint("a", THIRD, "198.19.1.5"))
    vx.put(node(THIRD, "198.18.5.3/24", "198.19.2.9"))
    assert vx.route("198.19.1.5/32") == (RouteType.VXLAN, "198.19.2.9", THIRD)
    vx.put(node(HOST, "198.18.0.1/16", "198.19.0.1"))  # now host-3 is on this host's subnet
    assert vx.route("198.19.1.5/32") == (RouteType.DIRECT, "198.18.5.3", THIRD)
    vx.delete(FAR)  # no node, no route; its removal comes before the VTEP's
    assert vx.route("198.19.1.5/32") is None and (THIRD, 4) not in vx.dp.vteps


def test_an_endpoint_moving_host_takes_its_route_along() -> None:
    vx = cross_subnet_cluster()
    vx.put(endpoint("a", THIRD, "198.19.1.5"))
    vx.delete(endpoint("a", THIRD, "198.19.1.5"))
    vx.put(endpoint("a", OTHER, "198.19.1.5"))  # now in its own host's block
    assert vx.route("198.19.1.5/32") is None
    vx.put(endpoint("a", OTHER, "198.19.2.4"))  # a new address, in host-3's block
    assert vx.route("198.19.2.4/32") == (RouteType.DIRECT, "198.18.0.2", OTHER)


def test_floating_ips_are_routed_when_felix_programs_their_nat() -> None:
    enabled = cross_subnet_cluster(floating_ips=True)
    enabled.put(endpoint("a", THIRD, "198.19.2.3", nats={"198.19.2.3": FIP}))
    assert enabled.route(f"{FIP}/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)
    enabled.put(pool("fip", "198.19.200.0/24", "Never"))  # the most specific pool decides
    assert enabled.route(f"{FIP}/32") is None
    enabled.put(pool("fip", "198.19.200.0/24", "CrossSubnet"))
    enabled.put(endpoint("a", THIRD, "198.19.2.3"))  # mapping removed
    assert enabled.route(f"{FIP}/32") is None
    disabled = cross_subnet_cluster(floating_ips=False)  # FloatingIPs Disabled: not for k8s...
    disabled.put(endpoint("a", THIRD, "198.19.2.3", nats={"198.19.2.3": FIP}))
    assert disabled.route(f"{FIP}/32") is None
    disabled.put(endpoint("b", OTHER, "198.19.1.3", nats={"198.19.1.3": FIP}, orch="openstack"))
    assert disabled.route(f"{FIP}/32") == (RouteType.DIRECT, "198.18.0.2", OTHER)  # ...OpenStack


def test_endpoints_known_before_any_vxlan_pool_are_routed_once_one_arrives() -> None:
    """Until a pool has VXLAN on, the resolver does not index endpoint addresses (nothing to
    route); a pool turning VXLAN on later routes the endpoints it already had."""
    vx = vx_with(False)
    vx.put(ME, PEER, FAR, NEVER, endpoint("a", THIRD, "198.19.1.5"))
    vx.blocks(BLOCKS)
    assert vx.dp.routes == {}
    vx.put(CROSS, endpoint("b", OTHER, "198.19.2.7"))
    assert vx.route("198.19.1.5/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)
    assert vx.route("198.19.2.7/32") == (RouteType.DIRECT, "198.18.0.2", OTHER)
    vx.put(NEVER)
    assert vx.dp.routes == {}
    vx.put(CROSS)
    assert vx.route("198.19.1.5/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)


def test_ipv6_borrowed_address_gets_a_128() -> None:
    vx = VX()
    me = node(HOST, bgp={"ipv6Address": "2001:db8::1/64"}, ipv6VXLANTunnelAddr="2001:db8:1::1")
    far = node(THIRD, bgp={"ipv6Address": "2001:db8:5::3/64"},
               ipv6VXLANTunnelAddr="2001:db8:1:2::1")  # fmt: skip
    vx.put(me, far, pool("v6", "2001:db8:1::/48", "CrossSubnet"))
    vx.blocks({"2001:db8:1::/122": HOST, "2001:db8:1:2::/122": THIRD})
    vx.put(endpoint("a", THIRD, "2001:db8:1::5"))
    assert vx.route("2001:db8:1::5/128") == (RouteType.VXLAN, "2001:db8:1:2::1", THIRD)


def test_two_endpoints_claiming_one_address_resolve_the_same_whatever_the_order() -> None:
    first, second = endpoint("a", THIRD, "198.19.1.5"), endpoint("b", OTHER, "198.19.2.5")
    third = endpoint("c", OTHER, "198.19.1.5")
    results = set()
    for order in ((first, second, third), (third, second, first)):
        vx = cross_subnet_cluster()
        vx.put(*order)
        results.add(tuple(sorted(vx.dp.routes.items())))
    assert len(results) == 1


@pytest.mark.parametrize("seed", range(20))
def test_final_routes_do_not_depend_on_the_order_of_updates(seed: int) -> None:
    """Nodes, pools, blocks and endpoints in any order (blocks applied as their own batch)."""
    rng = random.Random(seed)
    eps = [endpoint("a", THIRD, "198.19.1.5"), endpoint("b", OTHER, "198.19.0.7"),
           endpoint("c", HOST, "198.19.2.2")]  # fmt: skip
    steps: list[Any] = [ME, PEER, FAR, CROSS, *eps, *BLOCKS.items()]
    rng.shuffle(steps)
    vx = vx_with(False)
    for step in steps:
        if isinstance(step, tuple):
            vx.blocks(dict([step]))
        else:
            vx.put(step)
    assert vx.dp.routes == cross_subnet_cluster_with(eps).dp.routes


def cross_subnet_cluster_with(eps: list[Resource]) -> VX:
    vx = cross_subnet_cluster()
    vx.put(*eps)
    assert set(vx.dp.routes) == {LOCAL_BLOCK, PEER_BLOCK, FAR_BLOCK, "198.19.1.5/32",
                                 "198.19.0.7/32"}  # fmt: skip
    return vx


def test_a_block_full_of_borrowed_addresses_changing_hands() -> None:
    """More endpoint addresses than the block holds: the block's own addresses are walked."""
    vx = cross_subnet_cluster()
    borrowed = [endpoint(f"p{i}", THIRD, f"198.19.1.{i}") for i in range(64)]
    own = [endpoint(f"q{i}", THIRD, f"198.19.2.{i}") for i in range(10)]
    vx.put(*borrowed, *own)
    assert len(vx.dp.routes) == 3 + 64
    vx.blocks({PEER_BLOCK: THIRD})
    assert set(vx.dp.routes) == {LOCAL_BLOCK, PEER_BLOCK, FAR_BLOCK}
    vx.blocks({PEER_BLOCK: OTHER})
    assert vx.route("198.19.1.63/32") == (RouteType.VXLAN, "198.19.2.1", THIRD)
