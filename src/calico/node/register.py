"""Start-up work against the datastore: the node's addresses, its Node resource, default pools.

As calico/node's startup: resolve `IP`/`IP6` (explicit, `autodetect`, `none`, or unset = keep
what the Node already has), refuse an address another Node already uses, then create or update
the Node, changing only spec.bgp's ipv4Address, ipv6Address and asNumber (labels, route
reflector cluster ID and the rest are kept). Writes are compare-and-swap with retries.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from calico.datastore.client import (
    ResourceClient,
    ResourceConflict,
    ResourceExists,
    ResourceNotFound,
)
from calico.model.base import ObjectMeta
from calico.model.network import IPPool, IPPoolSpec, Node, NodeBGPSpec
from calico.node.autodetect import InterfaceAddress, first_found
from calico.node.config import AUTODETECT, NONE, NodeSettings

log = logging.getLogger(__name__)
_ATTEMPTS = 20


class NodeStartupError(RuntimeError):
    """Start-up cannot continue (no address found, address conflict...)."""


def resolve_address(
    setting: str | None,
    saved: str | None,
    version: int,
    addresses: Callable[[], Sequence[InterfaceAddress]],
) -> str | None:
    """The address to register for one IP version ("a.b.c.d/len" or None)."""
    if setting is None:  # unset: keep the Node's; else IPv4 autodetects, IPv6 stays off
        if saved:
            return saved
        setting = AUTODETECT if version == 4 else NONE
    if setting == NONE:
        return None
    if setting != AUTODETECT:
        return setting
    found = first_found(addresses(), version)
    if found is None:
        raise NodeStartupError(
            f"IP{'6' if version == 6 else ''}: autodetection found no global IPv{version}"
            " address on a usable interface"
        )
    return found


def merged_node(
    existing: Node | None, name: str, ipv4: str | None, ipv6: str | None, asn: int | None
) -> Node:
    """The Node to store: `existing` (or a new one) with our BGP fields set."""
    node = existing.model_copy(deep=True) if existing else Node(metadata=ObjectMeta(name=name))
    bgp = node.spec.bgp.model_copy() if node.spec.bgp else NodeBGPSpec()
    bgp.ipv4Address, bgp.ipv6Address = ipv4, ipv6
    if asn is not None:
        bgp.asNumber = asn
    has_bgp = bool(bgp.model_dump(exclude_none=True))
    spec = node.spec.model_copy(update={"bgp": bgp if has_bgp else None})
    return Node.model_validate({**node.to_dict(), "spec": spec.model_dump(exclude_none=True)})


def check_conflicts(nodes: Sequence[Node], name: str, ipv4: str | None, ipv6: str | None) -> None:
    """Refuse an address that another Node already registered (as Calico's startup does)."""
    mine = {ipaddress.ip_interface(a).ip for a in (ipv4, ipv6) if a}
    for other in nodes:
        if other.name == name or other.spec.bgp is None:
            continue
        for addr in (other.spec.bgp.ipv4Address, other.spec.bgp.ipv6Address):
            if addr and ipaddress.ip_interface(addr).ip in mine:
                raise NodeStartupError(
                    f"Calico node {other.name!r} is already using the address {addr}"
                )


def register_node(
    client: ResourceClient,
    settings: NodeSettings,
    addresses: Callable[[], Sequence[InterfaceAddress]],
) -> Node:
    """Create or update this node's Node resource; returns what is stored."""
    for _ in range(_ATTEMPTS):
        try:
            existing: Node | None = client.get(Node, settings.nodename)
        except ResourceNotFound:
            existing = None
        bgp = existing.spec.bgp if existing else None
        ipv4 = resolve_address(settings.ip, bgp.ipv4Address if bgp else None, 4, addresses)
        ipv6 = resolve_address(settings.ip6, bgp.ipv6Address if bgp else None, 6, addresses)
        others = [n for n in client.list(Node).items if isinstance(n, Node)]
        check_conflicts(others, settings.nodename, ipv4, ipv6)
        wanted = merged_node(existing, settings.nodename, ipv4, ipv6, settings.as_number)
        if existing is not None and wanted.spec == existing.spec:
            return existing
        try:
            stored = client.replace(wanted) if existing else client.create(wanted)
        except (ResourceConflict, ResourceExists, ResourceNotFound):
            continue  # someone else wrote it meanwhile: read again
        log.info("registered node %s (IPv4 %s, IPv6 %s)", settings.nodename, ipv4, ipv6)
        return stored
    raise NodeStartupError(f"Node {settings.nodename!r} keeps changing; could not update it")


def ensure_default_pools(client: ResourceClient, settings: NodeSettings) -> None:
    """`CALICO_IPV4POOL_CIDR`/`CALICO_IPV6POOL_CIDR`: a default pool when none of that family
    exists (unlike Calico, no pool is invented when the variable is unset)."""
    pools = [p for p in client.list(IPPool).items if isinstance(p, IPPool)]
    for version, cidr in ((4, settings.ipv4_pool), (6, settings.ipv6_pool)):
        if cidr is None:
            continue
        if any(ipaddress.ip_network(p.spec.cidr).version == version for p in pools):
            continue
        pool = IPPool(
            metadata=ObjectMeta(name=f"default-ipv{version}-ippool"),
            spec=IPPoolSpec(cidr=cidr),
        )
        try:
            client.create(pool)
            log.info("created IP pool default-ipv%d-ippool %s", version, cidr)
        except ResourceExists:
            pass
