"""VXLAN tunnel endpoints and the routes through them (Calico's VXLANResolver).

Inputs, as plain typed values (the graph adapts the resources):
- nodes: per IP family, the host address with its subnet (`spec.bgp.ipv4Address`, "a.b.c.d/len"),
  the VXLAN tunnel address and the VTEP MAC (configured, else Calico's derived one);
- IP pools: CIDR and vxlanMode (Always, CrossSubnet, Never);
- IPAM blocks: block CIDR -> affine host (None: no host affinity, or deleted);
- workload endpoints (all hosts'): the endpoint's host and its addresses, floating IPs
  (NAT external IPs) included when they apply.

Outputs, as desired-vs-sent state (`vteps`, `routes`), so what is sent depends only on the
current inputs:
- a VTEP for every node and family with both a tunnel address and a host address;
- a route for every block whose most specific pool has vxlanMode Always or CrossSubnet:
  BLACKHOLE for this host's own blocks; DIRECT via the remote host's address when the pool is
  CrossSubnet and this host's subnet contains that address; otherwise VXLAN via the remote
  VTEP's tunnel address, withheld while the remote node has no VTEP in the block's family.
  Blocks in no VXLAN pool are BGP's business and get nothing here.
- a /32 (/128) route, the same way (DIRECT or VXLAN, never a blackhole), for every address of
  a remote endpoint that is in a VXLAN pool but not in a block affine to the endpoint's host:
  an address borrowed from another host's block (Calico's L3 route resolver does this from
  the blocks' non-affine allocations, or from the endpoints with routeSource WorkloadIPs; the
  endpoints here are the same facts) or a floating IP from a pool of its own. Without it the
  address would follow its block to the block's host, which blackholes it. This host's own
  endpoints' addresses are the endpoint manager's routes (to their interfaces).

Invariant: every route key whose desired value may have changed is marked: a node change
marks its VTEPs, its blocks and its endpoints' addresses (all of them when it is this host:
its subnet decides DIRECT), a pool change the blocks and addresses inside the old and new
CIDR, a block change that block and the addresses inside it, an endpoint change its old and
new addresses. Endpoint addresses are indexed (and marked) only once some pool has had VXLAN
on: before that none can have a route, and the first such pool indexes and marks them all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from calico.calc.endpoint_messages import nats_apply
from calico.calc.messages import RouteType, RouteUpdate, VTEPUpdate
from calico.calc.sent_state import SentState
from calico.model.endpoints import WorkloadEndpoint
from calico.model.fields import parse_network
from calico.model.network import IPPool, Node
from calico.model.vxlan import vtep_mac

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
VXLANMode = Literal["Always", "CrossSubnet", "Never"]
VTEPKey = tuple[str, int]  # (node, IP version)
EndpointKey = Hashable


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


def endpoint_addresses(wep: WorkloadEndpoint, floating_ips: bool) -> tuple[str, ...]:
    """The endpoint's networks, and its floating IPs when Felix programs its NAT mappings,
    as the model's (valid) texts: the resolver parses them only once a VXLAN pool exists."""
    spec = wep.spec
    texts = list(spec.ipNetworks or [])
    if nats_apply(floating_ips, spec.orchestrator):
        texts += [n.externalIP for n in spec.ipNATs or []]
    return tuple(texts)


class VXLANResolver:
    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._nodes: dict[VTEPKey, NodeFamily] = {}
        self._pools: dict[str, VXLANPool] = {}
        self._blocks: dict[IPNetwork, str] = {}  # block -> affine host
        self._host_blocks: dict[str, set[IPNetwork]] = {}
        self._block_lens: dict[tuple[int, int], int] = {}  # (version, prefix) -> blocks
        self._endpoints: dict[EndpointKey, tuple[str, tuple[str, ...]]] = {}  # host, addresses
        self._owners: dict[IPNetwork, dict[EndpointKey, str]] | None = None
        """Endpoint address -> endpoint host, built when the first VXLAN pool arrives: until
        then no endpoint address can have a route, and parsing every address of the
        cluster's endpoints at start-up (~22k at scale L) would be for nothing."""
        self._host_endpoints: dict[str, set[EndpointKey]] = {}
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
            self.routes.mark_all(self._owners or ())
        else:
            self.routes.mark_all(self._host_blocks.get(name, ()))
            if self._owners is not None:
                for key in self._host_endpoints.get(name, ()):
                    self.routes.mark_all(_networks(self._endpoints[key][1]))

    def on_pool_update(self, name: str, pool: VXLANPool | None) -> None:
        old = self._pools.pop(name, None)
        if pool is not None:
            self._pools[name] = pool
            if pool.mode != "Never" and self._owners is None:
                self._owners = {}
                for key, (host, addresses) in self._endpoints.items():
                    self._own(key, host, addresses)
        for changed in (old, pool):
            if changed is not None:
                self.routes.mark_all(b for b in self._blocks if _within(b, changed.cidr))
                self.routes.mark_all(a for a in self._owners or () if _within(a, changed.cidr))

    def on_endpoint_update(
        self, key: EndpointKey, host: str | None, addresses: tuple[str, ...]
    ) -> None:
        """A workload endpoint (None host: deleted) and its single-address networks."""
        old = self._endpoints.pop(key, None)
        if old is not None:
            _discard(self._host_endpoints, old[0], key)
            if self._owners is not None:
                for address in _networks(old[1]):
                    owners = self._owners[address]
                    owners.pop(key, None)
                    if not owners:
                        del self._owners[address]
                    self.routes.mark(address)
        if host is None:
            return
        self._endpoints[key] = (host, addresses)
        self._host_endpoints.setdefault(host, set()).add(key)
        if self._owners is not None:
            self._own(key, host, addresses)

    def _own(self, key: EndpointKey, host: str, addresses: tuple[str, ...]) -> None:
        assert self._owners is not None
        for address in _networks(addresses):
            self._owners.setdefault(address, {})[key] = host
            self.routes.mark(address)

    def on_block_update(self, cidr: str, host: str | None) -> None:
        block = ipaddress.ip_network(cidr)
        old = self._blocks.pop(block, None)
        size = (block.version, block.prefixlen)
        if old is not None:
            _discard(self._host_blocks, old, block)
            self._block_lens[size] -= 1
            if not self._block_lens[size]:
                del self._block_lens[size]
        if host is not None:
            self._blocks[block] = host
            self._host_blocks.setdefault(host, set()).add(block)
            self._block_lens[size] = self._block_lens.get(size, 0) + 1
        self.routes.mark(block)
        self.routes.mark_all(self._addresses_in(block))

    def _addresses_in(self, block: IPNetwork) -> list[IPNetwork]:
        """The endpoint addresses inside `block`: by walking the smaller of the block
        (at most 4096 addresses, Calico's largest block) and the known addresses."""
        owners = self._owners or {}
        if block.num_addresses > len(owners):
            return [a for a in owners if _within(a, block)]
        full = block.max_prefixlen
        first = int(block.network_address)
        inside = (ipaddress.ip_network((first + i, full)) for i in range(block.num_addresses))
        return [a for a in inside if a in owners]

    # -- desired outputs ------------------------------------------------------------------

    def _vtep(self, key: VTEPKey) -> VTEPUpdate | None:
        family = self._nodes.get(key)
        if family is None or family.tunnel_addr is None or family.host is None:
            return None
        return VTEPUpdate(key[0], key[1], family.tunnel_addr, family.mac, str(family.host.ip))

    def _route(self, dst: IPNetwork) -> RouteUpdate | None:
        """An endpoint's address outside its host's blocks first (it may coincide with a
        /32 block), else the block."""
        owner = self._address_owner(dst)
        host = owner if owner is not None else self._blocks.get(dst)
        mode = self._mode(dst)
        if host is None or mode is None or mode == "Never":
            return None
        if host == self._hostname:
            return RouteUpdate(str(dst), host, RouteType.BLACKHOLE, "") if owner is None else None
        return self._remote_route(dst, host, mode)

    def _address_owner(self, address: IPNetwork) -> str | None:
        """The host of the endpoint with this address, unless it is in one of that host's
        blocks (then the block's route covers it). Two endpoints claiming one address: the
        smallest host name, so the result does not depend on the order they arrived in."""
        owners = self._owners.get(address) if self._owners else None
        if not owners:
            return None
        host = min(owners.values())
        return None if self._block_host(address) == host else host

    def _block_host(self, address: IPNetwork) -> str | None:
        """The affine host of the block containing `address` (blocks do not overlap)."""
        for version, prefix in self._block_lens:
            if version == address.version and prefix <= address.prefixlen:
                block = address.supernet(new_prefix=prefix)
                if block in self._blocks:
                    return self._blocks[block]
        return None

    def _remote_route(self, dst: IPNetwork, host: str, mode: VXLANMode) -> RouteUpdate | None:
        remote = self._nodes.get((host, dst.version))
        if mode == "CrossSubnet" and remote is not None and remote.host is not None:
            mine = self._nodes.get((self._hostname, dst.version))
            if mine is not None and mine.host is not None and remote.host.ip in mine.host.network:
                return RouteUpdate(str(dst), host, RouteType.DIRECT, str(remote.host.ip))
        vtep = self._vtep((host, dst.version))
        if vtep is None:
            return None
        return RouteUpdate(str(dst), host, RouteType.VXLAN, vtep.tunnel_addr)

    def _mode(self, block: IPNetwork) -> VXLANMode | None:
        """The vxlanMode of the most specific pool containing the block, if any."""
        pools = [
            (p.cidr.prefixlen, name, p.mode)
            for name, p in self._pools.items()
            if _within(block, p.cidr)
        ]
        return max(pools)[2] if pools else None  # equal CIDRs: the name decides, not history


def _networks(addresses: Iterable[str]) -> list[IPNetwork]:
    return [parse_network(a) for a in addresses]


def _discard(index: dict[str, set[Any]], host: str, item: object) -> None:
    index[host].discard(item)
    if not index[host]:
        del index[host]


def _within(block: IPNetwork, pool: IPNetwork) -> bool:
    return block.version == pool.version and block.subnet_of(pool)  # type: ignore[arg-type]


def _vtep_order(key: VTEPKey) -> tuple[int, str]:
    return key[1], key[0]


def _net_order(net: IPNetwork) -> tuple[int, int, int]:
    return net.version, int(net.network_address), net.prefixlen
