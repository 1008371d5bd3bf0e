"""Resolution tables for bgp.view: mesh membership, route reflectors, passive side, explicit
peers by selector, AS inheritance, router id, blocks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from calico.bgp.render import render
from calico.bgp.view import BgpView, Peer, PeerType, affine_blocks, build_view
from calico.ipam.keys import affinity_key
from calico.ipam.records import AffinityState, BlockAffinity
from calico.model.base import Resource

from .helpers import inputs_from, resource


def node(name: str, v4: str | None = None, v6: str | None = None, **extra: Any) -> Resource:
    labels = extra.pop("labels", None)
    bgp = {k: v for k, v in (("ipv4Address", v4), ("ipv6Address", v6)) if v}
    spec = {"bgp": {**bgp, **extra}} if bgp or extra else {}
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return resource({"kind": "Node", "metadata": meta, "spec": spec})


def config(name: str = "default", **spec: Any) -> Resource:
    return resource({"kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec})


def bgppeer(name: str, **spec: Any) -> Resource:
    return resource({"kind": "BGPPeer", "metadata": {"name": name}, "spec": spec})


def view(me: str, *resources: Resource, **kw: Any) -> BgpView:
    return build_view(inputs_from(list(resources), me), me, **kw)


def peers(v: BgpView, version: int = 4) -> dict[str, Peer]:
    fam = v.ipv4 if version == 4 else v.ipv6
    return {p.name: p for p in fam.peers}


A = node("a", "198.18.0.1/24", "2001:db8::1/64")
B = node("b", "198.18.0.2/24")
C = node("c", "198.18.0.10/24", "2001:db8::a/64")
NO_BGP = node("x")


def test_mesh_peers_every_other_node_with_an_address_of_the_family() -> None:
    v = view("a", A, B, C, NO_BGP)
    assert set(peers(v)) == {"Mesh_198_18_0_2", "Mesh_198_18_0_10"}
    assert set(peers(v, 6)) == {"Mesh_2001_db8__a"}
    assert all(p.type is PeerType.MESH and p.internal for p in peers(v).values())
    assert {p.source_address for p in peers(v).values()} == {"198.18.0.1"}


@pytest.mark.parametrize(
    ("me", "other", "passive"),
    [
        ("a", "Mesh_198_18_0_2", True),  # "198.18.0.2" > "198.18.0.1"
        ("b", "Mesh_198_18_0_10", False),  # string order, as confd: "198.18.0.10" < "198.18.0.2"
        ("c", "Mesh_198_18_0_2", True),
        ("c", "Mesh_198_18_0_1", False),
    ],
)
def test_mesh_is_passive_towards_higher_addresses_in_string_order(
    me: str, other: str, passive: bool
) -> None:
    assert peers(view(me, A, B, C))[other].passive is passive


def test_mesh_off_leaves_no_mesh_peers() -> None:
    v = view("a", A, B, C, config(nodeToNodeMeshEnabled=False))
    assert not v.mesh_enabled and peers(v) == {}


def test_route_reflectors_are_not_mesh_members_and_do_not_mesh() -> None:
    rr = node("rr", "198.18.0.20/24", routeReflectorClusterID="224.0.0.1")
    assert "Mesh_198_18_0_20" not in peers(view("a", A, B, rr))
    rr_view = view("rr", A, B, rr)
    assert rr_view.rr_cluster_id == "224.0.0.1" and peers(rr_view) == {}


def test_route_reflector_clients_and_same_cluster_reflectors() -> None:
    labels = {"route-reflector": "true"}
    rr1 = node("rr1", "198.18.0.21/24", routeReflectorClusterID="224.0.0.1", labels=labels)
    rr2 = node("rr2", "198.18.0.22/24", routeReflectorClusterID="224.0.0.1", labels=labels)
    rr3 = node("rr3", "198.18.0.23/24", routeReflectorClusterID="224.0.0.3", labels=labels)
    p = bgppeer("rr", nodeSelector="all()", peerSelector="route-reflector == 'true'")
    on_rr1 = peers(view("rr1", A, B, rr1, rr2, rr3, p))
    assert {n: x.rr_client for n, x in on_rr1.items()} == {
        "Node_198_18_0_1": True,  # client: no cluster ID
        "Node_198_18_0_2": True,
        "Node_198_18_0_22": False,  # same cluster: plain iBGP
        "Node_198_18_0_23": True,  # other cluster
    }
    on_a = peers(view("a", A, B, rr1, rr2, rr3, p))
    assert set(on_a) == {
        "Mesh_198_18_0_2",
        "Node_198_18_0_21",
        "Node_198_18_0_22",
        "Node_198_18_0_23",
    }
    assert not any(x.rr_client or x.passive for n, x in on_a.items() if n.startswith("Node_"))


def test_global_peer_applies_to_every_node_but_not_to_itself() -> None:
    p = bgppeer("tor", peerIP="198.18.0.254", asNumber=65000)
    for me in ("a", "b"):
        tor = peers(view(me, A, B, p))["Global_198_18_0_254"]
        assert (tor.as_number, tor.internal, tor.passive) == (65000, False, False)
    to_a = bgppeer("to-a", peerIP="198.18.0.1", asNumber=64512)
    assert "Global_198_18_0_1" not in peers(view("a", A, B, to_a))


def test_global_peer_that_is_a_calico_node_is_passive_towards_higher_addresses() -> None:
    to_b = bgppeer("to-b", peerIP="198.18.0.2", asNumber=64512)
    assert peers(view("a", A, B, to_b))["Global_198_18_0_2"].passive
    to_a = bgppeer("to-a", peerIP="198.18.0.1", asNumber=64512)
    assert not peers(view("b", A, B, to_a))["Global_198_18_0_1"].passive


def test_node_specific_peers_by_name_and_selector() -> None:
    a = node("a", "198.18.0.1/24", labels={"rack": "r1"})
    b = node("b", "198.18.0.2/24", labels={"rack": "r2"})
    by_name = bgppeer("p1", node="a", peerIP="198.18.0.250:1179", asNumber=65001)
    by_sel = bgppeer("p2", nodeSelector="rack == 'r2'", peerIP="198.18.0.251", asNumber=65001)
    assert set(peers(view("a", a, b, by_name, by_sel))) == {
        "Mesh_198_18_0_2",
        "Node_198_18_0_250_port_1179",
    }
    assert set(peers(view("b", a, b, by_name, by_sel))) == {"Mesh_198_18_0_1", "Node_198_18_0_251"}


def test_node_specific_peer_duplicating_a_global_one_is_dropped() -> None:
    glob = bgppeer("g", peerIP="198.18.0.250", asNumber=65003)
    spec = bgppeer("n", node="a", peerIP="198.18.0.250", asNumber=65004)
    got = peers(view("a", A, B, glob, spec))
    assert "Node_198_18_0_250" not in got and got["Global_198_18_0_250"].as_number == 65003


def test_reverse_peering_makes_selector_peerings_symmetric() -> None:
    a = node("a", "198.18.0.1/24", labels={"role": "edge"})
    b = node("b", "198.18.0.2/24", labels={"role": "core"})
    p = bgppeer("edge-to-core", nodeSelector="role == 'edge'", peerSelector="role == 'core'")
    off = config(nodeToNodeMeshEnabled=False)
    assert set(peers(view("a", a, b, p, off))) == {"Node_198_18_0_2"}
    assert set(peers(view("b", a, b, p, off))) == {"Node_198_18_0_1"}  # reverse pass
    ip_peer = bgppeer("a-to-b", node="a", peerIP="198.18.0.2", asNumber=64512)
    assert set(peers(view("b", a, b, ip_peer, off))) == {"Node_198_18_0_1"}


@pytest.mark.parametrize(
    ("resources", "me", "expected_as"),
    [
        ((A, B), "a", 64512),
        ((A, B, config(asNumber=65000)), "a", 65000),
        ((node("a", "198.18.0.1/24", asNumber=65010), B, config(asNumber=65000)), "a", 65010),
    ],
)
def test_as_number_inheritance(resources: tuple[Resource, ...], me: str, expected_as: int) -> None:
    assert view(me, *resources).as_number == expected_as


def test_mesh_peer_as_is_the_other_nodes_and_ebgp_when_different() -> None:
    a = node("a", "198.18.0.1/24", asNumber=65010)
    mesh = peers(view("b", a, B, config(asNumber=65000)))["Mesh_198_18_0_1"]
    assert (mesh.as_number, mesh.internal) == (65010, False)


def test_next_hop_keep_only_for_ebgp_and_next_hop_mode() -> None:
    ebgp = bgppeer("e", peerIP="198.18.0.250", asNumber=65000, keepOriginalNextHop=True)
    ibgp = bgppeer("i", peerIP="198.18.0.251", asNumber=64512, keepOriginalNextHop=True)
    self_ = bgppeer("s", peerIP="198.18.0.252", asNumber=64512, nextHopMode="Self")
    got = peers(view("a", A, ebgp, ibgp, self_))
    assert got["Global_198_18_0_250"].next_hop == "keep"
    assert got["Global_198_18_0_251"].next_hop is None
    assert got["Global_198_18_0_252"].next_hop == "self"


def test_peer_options() -> None:
    p = bgppeer(
        "p",
        peerIP="198.18.0.250",
        asNumber=65000,
        maxRestartTime="1m30s",
        keepaliveTime="10s",
        ttlSecurity=3,
        numAllowedLocalASNumbers=2,
        sourceAddress="None",
    )
    peer = peers(view("a", A, p))["Global_198_18_0_250"]
    assert (peer.graceful_restart_time, peer.keepalive_time) == (90, 10)
    assert (peer.ttl_security, peer.allow_local_as) == (3, 2)
    assert peer.source_address is None


def test_listen_ports_from_node_and_global_config() -> None:
    resources = (A, B, C, config(listenPort=1790), config("node.a", listenPort=1791))
    resources += (config("node.b", listenPort=1792),)
    v = view("a", *resources)
    assert v.listen_port == 1791
    assert peers(v)["Mesh_198_18_0_2"].port == 1792
    assert peers(v)["Mesh_198_18_0_10"].port == 1790
    to_c = bgppeer("to-c", node="a", peerIP="198.18.0.10", asNumber=64512)
    assert "Node_198_18_0_10_port_1790" in peers(view("a", *resources, to_c))


@pytest.mark.parametrize(
    ("resources", "override", "router_id"),
    [
        ((A,), None, "198.18.0.1"),
        ((A,), "198.18.9.9", "198.18.9.9"),
        ((node("v6", None, "2001:db8::6/64"),), None, "hash"),
        ((NO_BGP,), None, "hash"),
    ],
)
def test_router_id(resources: tuple[Resource, ...], override: str | None, router_id: str) -> None:
    me = resources[0].name
    v = view(me, *resources, router_id=override)
    if router_id == "hash":
        parts = [int(x) for x in v.router_id.split(".")]
        assert len(parts) == 4 and parts[0] <= 223
        assert v == view(me, *resources, router_id="hash")
    else:
        assert v.router_id == router_id


def test_node_without_bgp_has_no_families_enabled() -> None:
    v = view("x", NO_BGP, A)
    assert v.ipv4.address is None and v.ipv6.address is None
    assert peers(v) == {} and peers(v, 6) == {}


@pytest.mark.parametrize(
    ("level", "expected"),
    [(None, "info"), ("Debug", "debug"), ("Info", "info"), ("Warning", "none"), ("Fatal", "none")],
)
def test_log_level_mapping(level: str | None, expected: str) -> None:
    extra = (config(logSeverityScreen=level),) if level else ()
    assert view("a", A, *extra).log_level == expected


def test_affine_blocks_keep_only_this_hosts_confirmed_affinities() -> None:
    def kv(host: str, cidr: str, state: AffinityState, deleted: bool = False) -> tuple[str, bytes]:
        return affinity_key(host, cidr), BlockAffinity(state, deleted).to_json()

    kvs = [
        kv("a", "198.19.0.64/26", AffinityState.CONFIRMED),
        kv("a", "198.19.0.0/26", AffinityState.CONFIRMED),
        kv("a", "198.19.1.0/26", AffinityState.PENDING),
        kv("a", "198.19.2.0/26", AffinityState.PENDING_DELETION),
        kv("a", "198.19.3.0/26", AffinityState.CONFIRMED, deleted=True),
        kv("b", "198.19.4.0/26", AffinityState.CONFIRMED),
        (affinity_key("a", "2001:db8:100::/122"), b'{"state": ""}'),  # implicitly confirmed
        (affinity_key("a", "198.19.5.0/26"), b"not json"),
    ]
    assert affine_blocks(kvs, "a") == ("198.19.0.0/26", "198.19.0.64/26", "2001:db8:100::/122")


def test_pools_kernel_programming_and_export() -> None:
    def pool(name: str, **spec: Any) -> Resource:
        return resource({"kind": "IPPool", "metadata": {"name": name}, "spec": spec})

    v = view(
        "a",
        A,
        pool("plain", cidr="198.19.0.0/16"),
        pool("private", cidr="198.20.0.0/16", disableBGPExport=True),
        pool("v6", cidr="2001:db8:100::/48"),
    )
    got = {p.cidr: p.export for p in v.ipv4.pools}
    assert got == {"198.19.0.0/16": True, "198.20.0.0/16": False}
    assert [p.cidr for p in v.ipv6.pools] == ["2001:db8:100::/48"]


def test_vxlan_pools_stay_out_of_the_kernel_but_are_advertised() -> None:
    def pool(name: str, **spec: Any) -> Resource:
        return resource({"kind": "IPPool", "metadata": {"name": name}, "spec": spec})

    kvs = [(affinity_key("a", "198.19.0.0/26"), BlockAffinity(AffinityState.CONFIRMED).to_json())]
    inputs = inputs_from([A, pool("vx", cidr="198.19.0.0/16", vxlanMode="CrossSubnet"),
                          pool("plain", cidr="198.20.0.0/16", vxlanMode="Never")], "a")  # fmt: skip
    v = build_view(replace(inputs, blocks=affine_blocks(kvs, "a")), "a")
    assert {p.cidr: p.vxlan for p in v.ipv4.pools} == {"198.19.0.0/16": True,
                                                       "198.20.0.0/16": False}  # fmt: skip
    text = render(v)
    kernel = text[text.index("filter calico_kernel_programming") :]
    kernel = kernel[: kernel.index("\n}")]
    assert "if ( net ~ 198.19.0.0/16 ) then { reject; }" in kernel
    assert "if ( net ~ 198.20.0.0/16 ) then { accept; }" in kernel
    assert "route 198.19.0.0/26 blackhole;" in text  # still originated, so advertised:
    assert "if ( net = 198.19.0.0/26 ) then { accept; }" in text  # calico_aggr()


def _pw(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def test_a_peer_gets_its_password_or_is_withheld() -> None:
    resources = [
        A,
        B,
        config(nodeMeshPassword=_pw("bgp", "mesh")),
        bgppeer("tor", peerIP="198.18.0.254", asNumber=65000, password=_pw("bgp", "tor")),
        bgppeer("plain", peerIP="198.18.0.253", asNumber=65000),
    ]
    both = build_view(inputs_from(resources, "a", passwords={"bgp/mesh": "m", "bgp/tor": "t"}), "a")
    got = {p.name: (str(p.password_ref), p.password) for p in both.ipv4.peers}
    assert got == {
        "Mesh_198_18_0_2": ("bgp/mesh", "m"),
        "Global_198_18_0_254": ("bgp/tor", "t"),
        "Global_198_18_0_253": ("None", None),
    }
    assert both.withheld == ()
    assert "'m'" not in repr(both) and "'t'" not in repr(both)  # never in a log line

    only_mesh = build_view(inputs_from(resources, "a", passwords={"bgp/mesh": "m"}), "a")
    assert set(peers(only_mesh)) == {"Mesh_198_18_0_2", "Global_198_18_0_253"}
    assert [(p.name, str(p.password_ref)) for p in only_mesh.withheld] == [
        ("Global_198_18_0_254", "bgp/tor")
    ]
    none = view("a", *resources)
    assert set(peers(none)) == {"Global_198_18_0_253"}
    assert {p.name for p in none.withheld} == {"Mesh_198_18_0_2", "Global_198_18_0_254"}
