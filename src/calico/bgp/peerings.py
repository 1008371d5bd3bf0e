"""Explicit BGP peerings of one node, from the v3 BGPPeer resources (pure).

This is confd's `updatePeersV1` (confd/pkg/backends/calico/client.go) restricted to the node
being rendered:

1. global pass: a BGPPeer with neither `node` nor `nodeSelector` is a *global* peering
   (`Global_<ip>`) of every node;
2. node pass: a BGPPeer whose `node`/`nodeSelector` selects this node is a *node-specific*
   peering (`Node_<ip>`), unless a global peering to the same ip:port exists;
3. reverse pass: when this node is the *remote* side of a BGPPeer (it matches `peerSelector`,
   or its address, AS and port match `peerIP`/`asNumber`), it peers back with every node
   the BGPPeer selects locally, so a peering between two Calico nodes is symmetric.

The first peering emitted for a key (scope, ip, port) wins. BGPPeers are visited in name
order (Calico iterates a Go map, so its choice between conflicting BGPPeers is arbitrary).
A peering to another Calico node (`peerSelector`) uses that node's address, AS and listen
port; `peerIP` peerings are marked `calico_node` when the IP belongs to a node.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from calico.bgp.nodes import NodeBgp, Settings
from calico.bgp.secrets import SecretRef, password_ref
from calico.model.fields import duration_seconds
from calico.model.network import BGPPeer
from calico.selector import SelectorError
from calico.selector import parse as parse_selector


class PeerType(enum.Enum):
    """Peer kinds, as BIRD protocol-name prefixes."""

    MESH = "Mesh"
    GLOBAL = "Global"
    NODE = "Node"


@dataclass(frozen=True, slots=True)
class Peering:
    """One v1 peering (`/calico/bgp/v1/{global,host/<node>}/peer_v4/<ip>`) of this node."""

    type: PeerType
    ip: str
    port: int | None
    as_number: int
    source: str  # name of the BGPPeer it came from
    rr_cluster_id: str | None = None
    calico_node: bool = False
    keep_next_hop: bool = False
    next_hop_mode: str | None = None
    local_as_number: int | None = None
    num_allow_local_as: int | None = None
    ttl_security: int | None = None
    reachable_by: str | None = None
    source_address: str = "UseNodeIP"
    restart_time: int | None = None
    keepalive_time: int | None = None
    password: SecretRef | None = None

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.ip).version


def _split_peer_ip(text: str) -> tuple[str, int | None]:
    """ "ip", "ipv4:port" or "[ipv6]:port" -> (ip, port or None)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host, int(port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, None


class _Resolver:
    def __init__(self, me: str, nodes: Mapping[str, NodeBgp], settings: Settings) -> None:
        self.me = me
        self.nodes = nodes
        self.settings = settings
        self.node_ips = {ip for n in nodes.values() for ip in (n.ipv4, n.ipv6) if ip}
        self.global_keys: dict[tuple[str, int | None], Peering] = {}
        self.node_keys: dict[tuple[str, int | None], Peering] = {}

    def matching(self, selector: str) -> list[str]:
        try:
            sel = parse_selector(selector)
        except SelectorError:
            return []
        return [name for name, n in self.nodes.items() if sel.evaluate(n.labels)]

    def with_ip_port_as(self, ip: str, as_number: int | None, port: int | None) -> list[str]:
        """confd's nodesWithIPPortAndAS: Calico nodes that a peerIP/asNumber describes."""
        wanted_as = as_number or self.settings.as_number
        found = []
        for name, n in self.nodes.items():
            if ip not in (n.ipv4, n.ipv6):
                continue
            if (n.as_number or self.settings.as_number) != wanted_as:
                continue
            if port is not None and self.settings.port_of(name) not in (None, port):
                continue
            found.append(name)
        return found

    def node_peerings(
        self, node: str, versions: Iterable[int], res: BGPPeer, ptype: PeerType
    ) -> list[Peering]:
        """confd's nodeAsBGPPeers: peerings to another Calico node's addresses."""
        n = self.nodes[node]
        out = []
        for version in versions:
            ip = n.address(version)
            if ip is None:
                continue
            out.append(
                _with_resource_fields(
                    Peering(
                        ptype,
                        ip,
                        self.settings.port_of(node),
                        n.as_number or self.settings.as_number,
                        res.name,
                        rr_cluster_id=n.rr_cluster_id,
                        ttl_security=res.spec.ttlSecurity or None,
                        reachable_by=res.spec.reachableBy,
                    ),
                    res,
                )
            )
        return out

    def ip_peering(self, res: BGPPeer, ptype: PeerType) -> Peering | None:
        spec = res.spec
        assert spec.peerIP is not None
        ip, port = _split_peer_ip(spec.peerIP)
        ip = str(ipaddress.ip_address(ip))
        if port is None:
            local = self.with_ip_port_as(ip, spec.asNumber, None)
            port = self.settings.port_of(local[0]) if local else None
        reachable = spec.reachableBy
        version = ipaddress.ip_address(ip).version
        if reachable and ipaddress.ip_address(reachable).version != version:
            return None  # confd: "ReachableBy address family does not match PeerIP"
        peering = Peering(
            ptype,
            ip,
            port,
            spec.asNumber or self.settings.as_number,
            res.name,
            calico_node=ip in self.node_ips,
            keep_next_hop=bool(spec.keepOriginalNextHop),
            num_allow_local_as=spec.numAllowedLocalASNumbers or None,
            ttl_security=spec.ttlSecurity or None,
            reachable_by=reachable,
        )
        return _with_resource_fields(peering, res)

    def emit(self, peering: Peering) -> None:
        key = (peering.ip, peering.port)
        if peering.type is PeerType.GLOBAL:
            self.global_keys.setdefault(key, peering)
        elif key not in self.global_keys:
            self.node_keys.setdefault(key, peering)


def _with_resource_fields(peering: Peering, res: BGPPeer) -> Peering:
    """confd's setPeerConfigFieldsFromV3Resource (and the newer per-peer fields)."""
    spec = res.spec
    return replace(
        peering,
        source_address=spec.sourceAddress or "UseNodeIP",
        restart_time=round(duration_seconds(spec.maxRestartTime)) if spec.maxRestartTime else None,
        keepalive_time=round(duration_seconds(spec.keepaliveTime)) if spec.keepaliveTime else None,
        next_hop_mode=spec.nextHopMode,
        local_as_number=spec.localASNumber or None,
        password=password_ref(spec.password),
    )


def _local_nodes(r: _Resolver, res: BGPPeer) -> list[str]:
    if res.spec.nodeSelector:
        return r.matching(res.spec.nodeSelector)
    return [res.spec.node] if res.spec.node else []


def _forward(r: _Resolver, res: BGPPeer, global_pass: bool) -> None:
    """Passes 1 and 2: peerings this BGPPeer gives the nodes it selects."""
    ptype = PeerType.GLOBAL if global_pass else PeerType.NODE
    if not global_pass and r.me not in _local_nodes(r, res):
        return
    if res.spec.peerSelector:
        for name in r.matching(res.spec.peerSelector):
            for peering in r.node_peerings(name, (4, 6), res, ptype):
                r.emit(peering)
    elif res.spec.peerIP:
        single = r.ip_peering(res, ptype)
        if single is not None:
            r.emit(single)


def _reverse(r: _Resolver, res: BGPPeer) -> None:
    """Pass 3: this node is the remote side of `res`, so it peers back with the local side."""
    spec = res.spec
    versions: tuple[int, ...] = (4, 6)
    if spec.peerSelector:
        remote = r.matching(spec.peerSelector)
    elif spec.peerIP:
        ip, port = _split_peer_ip(spec.peerIP)
        remote = r.with_ip_port_as(str(ipaddress.ip_address(ip)), spec.asNumber, port)
        versions = (ipaddress.ip_address(ip).version,)
    else:
        return
    if r.me not in remote:
        return
    if spec.nodeSelector:
        local = r.matching(spec.nodeSelector)
    else:
        local = [spec.node] if spec.node else list(r.nodes)
    for name in local:
        if name in r.nodes:
            for peering in r.node_peerings(name, versions, res, PeerType.NODE):
                r.emit(peering)


def resolve_peerings(
    me: str, nodes: Mapping[str, NodeBgp], settings: Settings, peers: Sequence[BGPPeer]
) -> list[Peering]:
    """This node's global and node-specific peerings, in emission order."""
    r = _Resolver(me, nodes, settings)
    ordered = sorted(peers, key=lambda p: p.name)
    for global_pass in (True, False):
        for res in ordered:
            if global_pass == (not res.spec.node and not res.spec.nodeSelector):
                _forward(r, res, global_pass)
    for res in ordered:
        _reverse(r, res)
    return [*r.global_keys.values(), *r.node_keys.values()]
