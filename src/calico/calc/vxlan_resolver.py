"""VXLAN tunnel endpoints and the routes through them (Calico's VXLANResolver).

Inputs, as plain typed values (the graph adapts the resources):
- nodes: per IP family, the host address with its subnet (`spec.bgp.ipv4Address`, "a.b.c.d/len"),
  the VXLAN tunnel address and the VTEP MAC (configured, else Calico's derived one);
- IP pools: CIDR and vxlanMode (Always, CrossSubnet, Never);
- IPAM blocks: block CIDR -> affine host (None: no host affinity, or deleted).

Outputs, as desired-vs-sent state (`vteps`, `routes`), so what is sent depends only on the
current inputs:
- a VTEP for every node and family with both a tunnel address and a host address;
- a route for every block whose most specific pool has vxlanMode Always or CrossSubnet:
  BLACKHOLE for this host's own blocks; DIRECT via the remote host's address when the pool is
  CrossSubnet and this host's subnet contains that address; otherwise VXLAN via the remote
  VTEP's tunnel address, withheld while the remote node has no VTEP in the block's family.
  Blocks in no VXLAN pool are BGP's business and get nothing here.

Invariant: every route key whose desired value may have changed is marked: a node change
marks its VTEPs and its blocks (all blocks when it is this host: its subnet decides DIRECT),
a pool change the blocks inside the old and new CIDR, a block change that block.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from calico.calc.messages import RouteType, RouteUpdate, VTEPUpdate
from calico.calc.sent_state import SentState
from calico.model.network import IPPool, Node
from calico.model.vxlan import vtep_mac

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
VXLANMode = Literal["Always", "CrossSubnet", "Never"]
VTEPKey = tuple[str, int]  # (node, IP version)


@dataclass(frozen=True, slots=True)
class NodeFamily:
    """What one node offers VXLAN in one IP family."""

    version: int
    host: IPInterface | None  # host address and subnet (spec.bgp.ipv<N>Address)
    tunnel_addr: str | None
    mac: str


@dataclass(frozen=True, slots=True)
class VXLANPool:
    cidr: IPNetwork
    mode: VXLANMode


def vxlan_pool(pool: IPPool) -> VXLANPool:
    return VXLANPool(ipaddress.ip_network(pool.spec.cidr), pool.spec.vxlanMode or "Never")


def node_families(node: Node) -> tuple[NodeFamily, ...]:
    """The Node resource as the resolver sees it: one entry per IP family (the model has
    checked each address's family)."""
    bgp, spec = node.spec.bgp, node.spec
    hosts = (bgp.ipv4Address, bgp.ipv6Address) if bgp is not None else (None, None)
    tunnels = (spec.ipv4VXLANTunnelAddr, spec.ipv6VXLANTunnelAddr)
    macs = (spec.vxlanTunnelMACAddr, spec.vxlanTunnelMACAddrV6)
    out = []
    for version, host, tunnel, mac in zip((4, 6), hosts, tunnels, macs, strict=True):
        iface = ipaddress.ip_interface(host) if host else None
        addr = ipaddress.ip_address(tunnel) if tunnel else None
        out.append(
            NodeFamily(
                version,
                iface,
                str(addr) if addr is not None else None,
                vtep_mac(node.name, version, mac),
            )
        )
    return tuple(out)


class VXLANResolver:
    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._nodes: dict[VTEPKey, NodeFamily] = {}
        self._pools: dict[str, VXLANPool] = {}
        self._blocks: dict[IPNetwork, str] = {}  # block -> affine host
        self._host_blocks: dict[str, set[IPNetwork]] = {}
        self.vteps: SentState[VTEPKey, VTEPUpdate] = SentState(self._vtep, _vtep_order)
        self.routes: SentState[IPNetwork, RouteUpdate] = SentState(self._route, _net_order)

    # -- inputs ---------------------------------------------------------------------------

    def on_node_update(self, name: str, families: tuple[NodeFamily, ...] | None) -> None:
        for version in (4, 6):
            self._nodes.pop((name, version), None)
            self.vteps.mark((name, version))
        for family in families or ():
            self._nodes[(name, family.version)] = family
        if name == self._hostname:
            self.routes.mark_all(self._blocks)
        else:
            self.routes.mark_all(self._host_blocks.get(name, ()))

    def on_pool_update(self, name: str, pool: VXLANPool | None) -> None:
        old = self._pools.pop(name, None)
        if pool is not None:
            self._pools[name] = pool
        for changed in (old, pool):
            if changed is not None:
                self.routes.mark_all(b for b in self._blocks if _within(b, changed.cidr))

    def on_block_update(self, cidr: str, host: str | None) -> None:
        block = ipaddress.ip_network(cidr)
        old = self._blocks.pop(block, None)
        if old is not None:
            self._host_blocks[old].discard(block)
            if not self._host_blocks[old]:
                del self._host_blocks[old]
        if host is not None:
            self._blocks[block] = host
            self._host_blocks.setdefault(host, set()).add(block)
        self.routes.mark(block)

    # -- desired outputs ------------------------------------------------------------------

    def _vtep(self, key: VTEPKey) -> VTEPUpdate | None:
        family = self._nodes.get(key)
        if family is None or family.tunnel_addr is None or family.host is None:
            return None
        return VTEPUpdate(key[0], key[1], family.tunnel_addr, family.mac, str(family.host.ip))

    def _route(self, block: IPNetwork) -> RouteUpdate | None:
        host = self._blocks.get(block)
        mode = self._mode(block)
        if host is None or mode is None or mode == "Never":
            return None
        dst = str(block)
        if host == self._hostname:
            return RouteUpdate(dst, host, RouteType.BLACKHOLE, "")
        remote = self._nodes.get((host, block.version))
        if mode == "CrossSubnet" and remote is not None and remote.host is not None:
            mine = self._nodes.get((self._hostname, block.version))
            if mine is not None and mine.host is not None and remote.host.ip in mine.host.network:
                return RouteUpdate(dst, host, RouteType.DIRECT, str(remote.host.ip))
        vtep = self._vtep((host, block.version))
        if vtep is None:
            return None
        return RouteUpdate(dst, host, RouteType.VXLAN, vtep.tunnel_addr)

    def _mode(self, block: IPNetwork) -> VXLANMode | None:
        """The vxlanMode of the most specific pool containing the block, if any."""
        pools = [
            (p.cidr.prefixlen, name, p.mode)
            for name, p in self._pools.items()
            if _within(block, p.cidr)
        ]
        return max(pools)[2] if pools else None  # equal CIDRs: the name decides, not history


def _within(block: IPNetwork, pool: IPNetwork) -> bool:
    return block.version == pool.version and block.subnet_of(pool)  # type: ignore[arg-type]


def _vtep_order(key: VTEPKey) -> tuple[int, str]:
    return key[1], key[0]


def _net_order(net: IPNetwork) -> tuple[int, int, int]:
    return net.version, int(net.network_address), net.prefixlen
