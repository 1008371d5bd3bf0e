"""Everything BIRD must know for one node, resolved from datastore resources (pure).

Input: `BgpInputs` (Nodes, BGPPeers, BGPConfigurations by name, IPPools, this node's
confirmed affine blocks). Output: a frozen `BgpView` that `bgp.render`
turns into bird.cfg. Output depends on the inputs only (never on history or order).

Rules, as confd applies them (confd/pkg/backends/calico/{client,bgp_processor}.go and the
bird*.cfg templates):
- AS: the node's `spec.bgp.asNumber`, else BGPConfiguration `default` asNumber, else 64512.
  Listen port and log level: `node.<name>` BGPConfiguration, else `default`. Mesh, bind mode,
  mesh password/restart time and ignored interfaces are global only.
- Router id: override (CALICO_ROUTER_ID; "hash" hashes the node name), else the node's IPv4
  address, else the hash (Calico needs CALICO_ROUTER_ID=hash on IPv6-only nodes; we do it).
- Mesh (`Mesh_<ip>`), when enabled and this node is not a route reflector: every other node
  with an address of the family, except route reflectors; passive towards higher addresses
  (string order, as confd's template compares).
- Explicit peers: see `bgp.peerings`. A peer at this node's own address is skipped. Passive
  for global peers that are Calico nodes with a higher address. `rr client` when this node
  has a cluster ID and the iBGP peer's cluster ID differs.
- Passwords: a peer whose BGPPeer `password` (or, for the mesh, `nodeMeshPassword`) names a
  secret gets the value from `BgpInputs.passwords` (read by the agent, `bgp.secrets`); when
  the value is absent the peer is left out and listed in `withheld` (fail closed: no session
  rather than one without its password).
- VXLAN pools (vxlanMode Always or CrossSubnet): Felix programs their routes and blackholes,
  so BIRD keeps them out of the kernel (`Pool.vxlan`) but still advertises their blocks, as
  confd's bird_ipam template. IPIP pools and programClusterRoutes Disabled are refused by
  the model (calico.model.support).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from calico.bgp.nodes import (
    NODE_CONFIG_PREFIX,
    NodeBgp,
    Settings,
    hash_router_id,
    log_level,
    node_table,
    protocol_id,
    settings,
)
from calico.bgp.peerings import Peering, PeerType, resolve_peerings
from calico.bgp.secrets import SecretRef
from calico.ipam.keys import parse_affinity_key
from calico.ipam.records import AffinityState, BlockAffinity, RecordFormatError
from calico.model.network import BGPConfiguration, BGPPeer, IPPool, Node
from calico.model.vxlan import vxlan_enabled

__all__ = ["BgpInputs", "BgpView", "FamilyView", "Peer", "PeerType", "Pool", "build_view"]


@dataclass(frozen=True, slots=True)
class BgpInputs:
    nodes: Sequence[Node] = ()
    peers: Sequence[BGPPeer] = ()
    configs: Mapping[str, BGPConfiguration] = field(default_factory=dict)
    pools: Sequence[IPPool] = ()
    blocks: Sequence[str] = ()  # this node's confirmed affine block CIDRs
    passwords: Mapping[SecretRef, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    type: PeerType
    ip: str
    as_number: int
    internal: bool  # iBGP: same AS as this node's (local) AS
    port: int | None = None
    local_as_number: int | None = None
    source_address: str | None = None
    passive: bool = False
    rr_client: bool = False
    next_hop: Literal["self", "keep"] | None = None
    graceful_restart_time: int | None = None
    keepalive_time: int | None = None
    ttl_security: int | None = None
    allow_local_as: int | None = None
    reachable_by: str | None = None
    password_ref: SecretRef | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Pool:
    cidr: str
    export: bool  # False when disableBGPExport
    disabled: bool
    vxlan: bool = False  # vxlanMode Always or CrossSubnet: routes are Felix's to program


@dataclass(frozen=True, slots=True)
class Advertisement:
    cidr: str
    communities: tuple[str, ...]  # "aa:nn" or "aa:nn:mm"


@dataclass(frozen=True, slots=True)
class FamilyView:
    version: int
    address: str | None  # None: no BGP for this family on this node
    network: str | None = None
    peers: tuple[Peer, ...] = ()
    pools: tuple[Pool, ...] = ()
    blocks: tuple[str, ...] = ()
    advertisements: tuple[Advertisement, ...] = ()
    withheld: tuple[Peer, ...] = ()  # left out: their password secret is not in the inputs


@dataclass(frozen=True, slots=True)
class BgpView:
    node_name: str
    router_id: str
    as_number: int
    ipv4: FamilyView
    ipv6: FamilyView
    listen_port: int | None = None
    strict_bind: bool = False
    log_level: str = "info"
    mesh_enabled: bool = True
    rr_cluster_id: str | None = None
    ignored_interfaces: tuple[str, ...] = ()

    @property
    def families(self) -> tuple[FamilyView, FamilyView]:
        return (self.ipv4, self.ipv6)

    @property
    def withheld(self) -> tuple[Peer, ...]:
        """Peers not configured because their password is missing."""
        return self.ipv4.withheld + self.ipv6.withheld


def affine_blocks(affinities: Iterable[tuple[str, bytes]], host: str) -> tuple[str, ...]:
    """CIDRs of `host`'s confirmed block affinities from raw (key, value) pairs."""
    blocks = []
    for key, value in affinities:
        parsed = parse_affinity_key(key)
        if parsed is None or parsed[0] != host:
            continue
        try:
            record = BlockAffinity.from_json(value)
        except RecordFormatError:
            continue
        if record.state is AffinityState.CONFIRMED and not record.deleted:
            blocks.append(parsed[1])
    return tuple(sorted(blocks, key=_net_key))


def _net_key(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return (net.version, int(net.network_address), net.prefixlen)


def _router_id(me: NodeBgp, override: str | None) -> str:
    if override == "hash" or (not override and me.ipv4 is None):
        return hash_router_id(me.name)
    return override or str(me.ipv4)


def _pool(pool: IPPool) -> Pool:
    spec = pool.spec
    return Pool(
        cidr=str(ipaddress.ip_network(spec.cidr)),
        export=not spec.disableBGPExport,
        disabled=bool(spec.disabled),
        vxlan=vxlan_enabled(spec.vxlanMode),
    )


def _advertisements(configs: Mapping[str, BGPConfiguration], node: str) -> list[Advertisement]:
    """Communities per prefix: the node's config if it has prefixAdvertisements, else default."""
    for name in (f"{NODE_CONFIG_PREFIX}{node}", "default"):
        cfg = configs.get(name)
        if cfg is None or cfg.spec.prefixAdvertisements is None:
            continue
        named = {c.name: c.value for c in cfg.spec.communities or []}
        out = []
        for adv in cfg.spec.prefixAdvertisements:
            values = sorted({named.get(c, c) for c in adv.communities or []})
            if values:
                out.append(Advertisement(str(ipaddress.ip_network(adv.cidr)), tuple(values)))
        return out
    return []


def _mesh_peers(me: NodeBgp, nodes: Mapping[str, NodeBgp], s: Settings, version: int) -> list[Peer]:
    own = me.address(version)
    if me.rr_cluster_id or not s.mesh_enabled or own is None:
        return []
    peers = []
    for other in nodes.values():
        ip = other.address(version)
        if ip is None or ip == own or other.rr_cluster_id:
            continue
        peers.append(
            Peer(
                name=f"Mesh_{protocol_id(ip)}",
                type=PeerType.MESH,
                ip=ip,
                as_number=other.as_number or s.as_number,
                internal=(other.as_number or s.as_number) == (me.as_number or s.as_number),
                port=s.port_of(other.name),
                source_address=own,
                passive=ip > own,
                graceful_restart_time=s.mesh_restart_time,
                password_ref=s.mesh_password,
            )
        )
    return peers


def _explicit_peer(p: Peering, me: NodeBgp, node_as: int, own: str) -> Peer:
    local_as = p.local_as_number or node_as
    name = f"{p.type.value}_{protocol_id(p.ip)}" + (f"_port_{p.port}" if p.port else "")
    next_hop: Literal["self", "keep"] | None = None
    if p.next_hop_mode == "Self":
        next_hop = "self"
    elif p.next_hop_mode == "Keep" or (p.keep_next_hop and p.as_number != local_as):
        next_hop = "keep"
    rr = bool(me.rr_cluster_id) and p.as_number == local_as and p.rr_cluster_id != me.rr_cluster_id
    return Peer(
        name=name,
        type=p.type,
        ip=p.ip,
        as_number=p.as_number,
        internal=p.as_number == local_as,
        port=p.port,
        local_as_number=p.local_as_number,
        source_address=own if p.source_address == "UseNodeIP" else None,
        passive=p.type is PeerType.GLOBAL and p.calico_node and p.ip > own,
        rr_client=rr,
        next_hop=next_hop,
        graceful_restart_time=p.restart_time,
        keepalive_time=p.keepalive_time,
        ttl_security=p.ttl_security,
        allow_local_as=p.num_allow_local_as,
        reachable_by=p.reachable_by,
        password_ref=p.password,
    )


def _with_passwords(
    peers: Iterable[Peer], passwords: Mapping[SecretRef, str]
) -> tuple[list[Peer], list[Peer]]:
    """(peers to configure, with their passwords; peers withheld for want of one)."""
    usable, withheld = [], []
    for peer in peers:
        if peer.password_ref is None:
            usable.append(peer)
        elif peer.password_ref in passwords:
            usable.append(replace(peer, password=passwords[peer.password_ref]))
        else:
            withheld.append(peer)
    return usable, withheld


def _family(
    version: int,
    me: NodeBgp,
    nodes: Mapping[str, NodeBgp],
    s: Settings,
    inputs: BgpInputs,
    peerings: Sequence[Peering],
) -> FamilyView:
    own = me.address(version)
    node_as = me.as_number or s.as_number
    peers: list[Peer] = []
    if own is not None:
        peers = _mesh_peers(me, nodes, s, version)
        peers += [
            _explicit_peer(p, me, node_as, own)
            for p in peerings
            if p.version == version and p.ip != own
        ]
    peers, withheld = _with_passwords(peers, inputs.passwords)
    pools = [_pool(p) for p in inputs.pools]
    pools = sorted((p for p in pools if _v(p.cidr) == version), key=lambda p: _net_key(p.cidr))
    return FamilyView(
        version=version,
        address=own,
        network=me.network(version),
        peers=tuple(sorted(peers, key=_peer_key)),
        withheld=tuple(sorted(withheld, key=_peer_key)),
        pools=tuple(pools),
        blocks=tuple(b for b in sorted(inputs.blocks, key=_net_key) if _v(b) == version),
        advertisements=tuple(
            a for a in _advertisements(inputs.configs, me.name) if _v(a.cidr) == version
        ),
    )


def _peer_key(peer: Peer) -> tuple[int, str]:
    order = {PeerType.MESH: 0, PeerType.GLOBAL: 1, PeerType.NODE: 2}
    return (order[peer.type], peer.name)


def _v(cidr: str) -> int:
    return ipaddress.ip_network(cidr).version


def build_view(inputs: BgpInputs, node_name: str, *, router_id: str | None = None) -> BgpView:
    """The BGP view of `node_name`; a node without BGP addresses gets no BGP sessions."""
    nodes = node_table(inputs.nodes)
    me = nodes.get(node_name, NodeBgp(node_name))
    s = settings(inputs.configs)
    peerings = resolve_peerings(node_name, nodes, s, inputs.peers) if node_name in nodes else []
    return BgpView(
        node_name=node_name,
        router_id=_router_id(me, router_id),
        as_number=me.as_number or s.as_number,
        ipv4=_family(4, me, nodes, s, inputs, peerings),
        ipv6=_family(6, me, nodes, s, inputs, peerings),
        listen_port=s.port_of(node_name),
        strict_bind=s.strict_bind,
        log_level=log_level(inputs.configs, node_name),
        mesh_enabled=s.mesh_enabled,
        rr_cluster_id=me.rr_cluster_id,
        ignored_interfaces=s.ignored_interfaces,
    )
