"""VXLAN route resolution through the whole graph: Nodes, IP pools and IPAM blocks in, VTEP
and route messages out (pure, no kernel). The model dataplane checks after every message
that no VXLAN route is ever programmed without its VTEP."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from calico.calc import messages as m
from calico.calc.graph import CalcGraph
from calico.calc.messages import RouteType
from calico.model.base import Resource
from calico.model.keys import key_of
from calico.model.network import IPPool
from calico.model.sync import SyncStatus
from calico.model.vxlan import vtep_mac

from .dataplane_model import ModelDataplane
from .test_calc_graph import HOST, Harness, res

OTHER, THIRD = "host-2", "host-3"


def node(name: str, host4: str | None = None, tunnel4: str | None = None, **spec: Any) -> Resource:
    if host4 is not None:
        spec.setdefault("bgp", {})["ipv4Address"] = host4
    if tunnel4 is not None:
        spec["ipv4VXLANTunnelAddr"] = tunnel4
    return res("Node", name, spec)


def pool(name: str, cidr: str, mode: str) -> IPPool:
    """Built past validation: these tests do not depend on whether the support table accepts
    vxlanMode yet."""
    plain = res("IPPool", name, {"cidr": cidr})
    assert isinstance(plain, IPPool)
    return plain.model_copy(update={"spec": plain.spec.model_copy(update={"vxlanMode": mode})})


ME = node(HOST, "198.18.0.1/24", "198.19.0.1")
PEER = node(OTHER, "198.18.0.2/24", "198.19.1.1")  # same subnet as ME
FAR = node(THIRD, "198.18.5.3/24", "198.19.2.1")  # another subnet
ALWAYS = pool("vx", "198.19.0.0/16", "Always")
CROSS = pool("vx", "198.19.0.0/16", "CrossSubnet")
NEVER = pool("vx", "198.19.0.0/16", "Never")
LOCAL_BLOCK, PEER_BLOCK, FAR_BLOCK = "198.19.0.0/26", "198.19.1.0/26", "198.19.2.0/26"
BLOCKS = {LOCAL_BLOCK: HOST, PEER_BLOCK: OTHER, FAR_BLOCK: THIRD}


class VX(Harness):
    """The calc graph harness plus IPAM blocks and a look at the VXLAN routes."""

    def blocks(self, blocks: dict[str, str | None]) -> None:
        self.graph.on_block_updates(list(blocks.items()))

    def route(self, dst: str) -> tuple[RouteType, str, str] | None:
        route = self.dp.routes.get(dst)
        return None if route is None else (route.type, route.next_hop, route.node)

    def last(self) -> list[m.Message]:
        return self.dp.batches[-1]


def vtep(name: str, host: str, tunnel: str, version: int = 4) -> m.VTEPUpdate:
    return m.VTEPUpdate(name, version, tunnel, vtep_mac(name, version), host)


def test_always_routes_remote_blocks_via_their_vtep_and_blackholes_local_ones() -> None:
    vx = VX()
    vx.put(ME, PEER, FAR, ALWAYS)
    vx.blocks(BLOCKS)
    assert vx.dp.vteps == {
        (HOST, 4): vtep(HOST, "198.18.0.1", "198.19.0.1"),  # this host's own, for its device
        (OTHER, 4): vtep(OTHER, "198.18.0.2", "198.19.1.1"),
        (THIRD, 4): vtep(THIRD, "198.18.5.3", "198.19.2.1"),
    }
    assert vx.route(LOCAL_BLOCK) == (RouteType.BLACKHOLE, "", HOST)
    assert vx.route(PEER_BLOCK) == (RouteType.VXLAN, "198.19.1.1", OTHER)  # same subnet: still
    assert vx.route(FAR_BLOCK) == (RouteType.VXLAN, "198.19.2.1", THIRD)


def test_cross_subnet_routes_same_subnet_blocks_directly() -> None:
    vx = VX()
    vx.put(ME, PEER, FAR, CROSS)
    vx.blocks(BLOCKS)
    assert vx.route(PEER_BLOCK) == (RouteType.DIRECT, "198.18.0.2", OTHER)
    assert vx.route(FAR_BLOCK) == (RouteType.VXLAN, "198.19.2.1", THIRD)
    assert vx.route(LOCAL_BLOCK) == (RouteType.BLACKHOLE, "", HOST)
    # This host's subnet decides: once it is a /16 the far host is on it too.
    vx.put(node(HOST, "198.18.0.1/16", "198.19.0.1"))
    assert vx.route(FAR_BLOCK) == (RouteType.DIRECT, "198.18.5.3", THIRD)
    vx.put(node(HOST, "198.18.0.1/32", "198.19.0.1"))
    assert vx.route(PEER_BLOCK) == (RouteType.VXLAN, "198.19.1.1", OTHER)


def test_ipv6() -> None:
    vx = VX()
    me = res("Node", HOST, {"bgp": {"ipv6Address": "2001:db8::1/64"},
                            "ipv6VXLANTunnelAddr": "2001:db8:1::1"})  # fmt: skip
    peer = res("Node", OTHER, {"bgp": {"ipv6Address": "2001:db8::2/64"},
                               "ipv6VXLANTunnelAddr": "2001:db8:1:1::1"})  # fmt: skip
    far = res("Node", THIRD, {"bgp": {"ipv6Address": "2001:db8:5::3/64"},
                              "ipv6VXLANTunnelAddr": "2001:db8:1:2::1"})  # fmt: skip
    vx.put(me, peer, far, pool("v6", "2001:db8:1::/48", "CrossSubnet"))
    vx.blocks({"2001:db8:1:1::/122": OTHER, "2001:db8:1:2::/122": THIRD, "2001:db8:1::/122": HOST})
    assert vx.dp.vteps[(OTHER, 6)] == vtep(OTHER, "2001:db8::2", "2001:db8:1:1::1", 6)
    assert vx.dp.vteps[(OTHER, 6)].mac == vtep_mac(OTHER, 6) != vtep_mac(OTHER, 4)
    assert set(vx.dp.vteps) == {(HOST, 6), (OTHER, 6), (THIRD, 6)}  # no IPv4 addresses
    assert vx.route("2001:db8:1:1::/122") == (RouteType.DIRECT, "2001:db8::2", OTHER)
    assert vx.route("2001:db8:1:2::/122") == (RouteType.VXLAN, "2001:db8:1:2::1", THIRD)
    assert vx.route("2001:db8:1::/122") == (RouteType.BLACKHOLE, "", HOST)


def test_a_node_without_a_vtep_gets_no_vxlan_route_until_it_has_one() -> None:
    vx = VX()
    vx.put(ME, node(THIRD, "198.18.5.3/24"), node(OTHER, tunnel4="198.19.1.1"), ALWAYS)
    vx.blocks(BLOCKS)
    assert set(vx.dp.vteps) == {(HOST, 4)}  # no tunnel address; no parent address
    assert vx.route(FAR_BLOCK) is None and vx.route(PEER_BLOCK) is None
    vx.put(FAR)
    assert vx.last() == [vtep(THIRD, "198.18.5.3", "198.19.2.1"), vx.dp.routes[FAR_BLOCK]]
    # CrossSubnet on the same subnet needs only the host address, no VTEP.
    vx.put(CROSS, node(OTHER, "198.18.0.2/24"))
    assert vx.route(PEER_BLOCK) == (RouteType.DIRECT, "198.18.0.2", OTHER)
    assert (OTHER, 4) not in vx.dp.vteps


def test_deleting_a_node_removes_its_routes_then_its_vtep() -> None:
    vx = VX()
    vx.put(ME, PEER, FAR, ALWAYS)
    vx.blocks(BLOCKS)
    vx.delete(FAR)
    assert vx.last() == [m.RouteRemove(FAR_BLOCK), m.VTEPRemove(THIRD, 4)]
    vx.put(FAR)  # back: VTEP first, then its route
    assert [type(msg) for msg in vx.last()] == [m.VTEPUpdate, m.RouteUpdate]


def test_a_block_that_moves_host_is_re_pointed() -> None:
    vx = VX()
    vx.put(ME, PEER, FAR, ALWAYS)
    vx.blocks(BLOCKS)
    vx.blocks({PEER_BLOCK: THIRD})
    assert vx.last() == [m.RouteUpdate(PEER_BLOCK, THIRD, RouteType.VXLAN, "198.19.2.1")]
    vx.blocks({PEER_BLOCK: HOST})
    assert vx.route(PEER_BLOCK) == (RouteType.BLACKHOLE, "", HOST)
    vx.blocks({PEER_BLOCK: None})  # deleted, or no host affinity
    assert vx.last() == [m.RouteRemove(PEER_BLOCK)]


def test_pool_mode_changes_follow_always_never_cross_subnet() -> None:
    vx = VX()
    vx.put(ME, PEER, FAR, ALWAYS)
    vx.blocks(BLOCKS)
    vx.put(NEVER)  # routed pool: BGP's business; VTEPs stay, they belong to the nodes
    assert vx.dp.routes == {} and len(vx.dp.vteps) == 3
    assert vx.last()[:3] == [m.RouteRemove(b) for b in (LOCAL_BLOCK, PEER_BLOCK, FAR_BLOCK)]
    vx.put(CROSS)
    assert vx.route(PEER_BLOCK) == (RouteType.DIRECT, "198.18.0.2", OTHER)
    assert vx.route(FAR_BLOCK) == (RouteType.VXLAN, "198.19.2.1", THIRD)
    vx.delete(CROSS)
    assert vx.dp.routes == {} and vx.dp.pools == {}
    assert isinstance(vx.last()[-1], m.IPAMPoolRemove)  # after the routes in its CIDR


def test_the_most_specific_pool_decides_and_other_blocks_get_nothing() -> None:
    vx = VX()
    vx.put(ME, PEER, FAR, ALWAYS, pool("routed", "198.19.2.0/24", "Never"))
    vx.blocks({**BLOCKS, "198.20.0.0/26": OTHER})  # in no pool
    assert set(vx.dp.routes) == {LOCAL_BLOCK, PEER_BLOCK}
    vx.put(pool("routed", "198.19.2.0/24", "CrossSubnet"))
    assert vx.route(FAR_BLOCK) == (RouteType.VXLAN, "198.19.2.1", THIRD)
    vx.delete(ALWAYS)
    assert set(vx.dp.routes) == {FAR_BLOCK}


def test_a_vtep_whose_tunnel_address_changes_takes_its_routes_along() -> None:
    vx = VX()
    vx.put(ME, PEER, ALWAYS)
    vx.blocks(BLOCKS)
    moved = node(OTHER, "198.18.0.2/24", "198.19.1.9")
    vx.put(moved)
    assert vx.last() == [
        m.RouteRemove(PEER_BLOCK),
        vtep(OTHER, "198.18.0.2", "198.19.1.9"),
        m.RouteUpdate(PEER_BLOCK, OTHER, RouteType.VXLAN, "198.19.1.9"),
    ]
    vx.put(node(OTHER, "198.18.0.2/24", "198.19.1.9", vxlanTunnelMACAddr="66:00:00:00:00:01"))
    assert [type(msg) for msg in vx.last()] == [m.VTEPUpdate]  # the route still holds


def test_mac_configured_or_derived() -> None:
    vx = VX()
    vx.put(node(OTHER, "198.18.0.2/24", "198.19.1.1", vxlanTunnelMACAddr="66:AA:BB:CC:DD:EE"))
    assert vx.dp.vteps[(OTHER, 4)].mac == "66:aa:bb:cc:dd:ee"
    vx.put(PEER)
    assert vx.dp.vteps[(OTHER, 4)].mac == vtep_mac(OTHER, 4)
    assert vtep_mac(OTHER, 4).startswith("66:")


def test_one_flush_orders_route_removals_vtep_removals_vtep_updates_route_updates() -> None:
    vx = VX()
    vx.put(ME, PEER, ALWAYS)
    vx.blocks(BLOCKS)
    # One batch: PEER leaves, FAR arrives, and PEER's block moves to FAR: its route is
    # withdrawn before PEER's VTEP goes, and sent again once FAR's is there.
    vx.graph.apply(key_of(PEER), None)
    vx.graph.apply(key_of(FAR), FAR)
    vx.graph.on_block_updates([(PEER_BLOCK, THIRD)])
    assert vx.last() == [
        m.RouteRemove(PEER_BLOCK),
        m.VTEPRemove(OTHER, 4),
        vtep(THIRD, "198.18.5.3", "198.19.2.1"),
        m.RouteUpdate(PEER_BLOCK, THIRD, RouteType.VXLAN, "198.19.2.1"),
        m.RouteUpdate(FAR_BLOCK, THIRD, RouteType.VXLAN, "198.19.2.1"),
    ]
    vx.graph.apply(key_of(FAR), None)
    vx.graph.apply(key_of(PEER), PEER)
    vx.graph.on_block_updates([(FAR_BLOCK, None)])
    assert vx.last() == [
        m.RouteRemove(PEER_BLOCK),  # FAR has gone, PEER has no block back yet
        m.RouteRemove(FAR_BLOCK),
        m.VTEPRemove(THIRD, 4),
        vtep(OTHER, "198.18.0.2", "198.19.1.1"),
    ]


def test_nothing_before_in_sync_then_one_batch_ending_in_in_sync() -> None:
    dp = ModelDataplane()
    graph = CalcGraph(HOST, dp)
    graph.on_updates([(key_of(r), r) for r in (ME, PEER, ALWAYS)])
    graph.on_block_updates(list(BLOCKS.items()))
    assert not dp.in_sync
    graph.on_status(SyncStatus.IN_SYNC)
    assert dp.in_sync and isinstance(dp.batches[-1][-1], m.InSync)


# Every state to every other: the incremental result equals a fresh graph's.
STATES: list[tuple[tuple[Resource, ...], dict[str, str]]] = [
    ((), {}),
    ((ME, PEER, FAR, ALWAYS), BLOCKS),
    ((ME, PEER, CROSS), {PEER_BLOCK: THIRD, FAR_BLOCK: THIRD}),
    ((node(HOST, "198.18.0.1/16"), FAR, CROSS), {PEER_BLOCK: OTHER, LOCAL_BLOCK: HOST}),
    ((ME, node(OTHER, "198.18.5.9/24", "198.19.1.2"), NEVER), BLOCKS),
]


def _go(vx: VX, state: tuple[tuple[Resource, ...], dict[str, str]]) -> None:
    resources, blocks = state
    wanted = {key_of(r): r for r in resources}
    known = {key_of(r) for s in STATES for r in s[0]}
    vx.graph.on_updates([(k, wanted.get(k)) for k in sorted(known, key=str)])
    all_blocks = {b for s in STATES for b in s[1]}
    vx.graph.on_block_updates([(b, blocks.get(b)) for b in sorted(all_blocks)])


@pytest.mark.parametrize("before,after", list(itertools.permutations(range(len(STATES)), 2)))
def test_state_to_state_equals_a_fresh_graph(before: int, after: int) -> None:
    vx, fresh = VX(), VX()
    _go(vx, STATES[before])
    _go(vx, STATES[after])
    _go(fresh, STATES[after])
    assert (vx.dp.vteps, vx.dp.routes) == (fresh.dp.vteps, fresh.dp.routes)
