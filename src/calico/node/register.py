"""Start-up work against the datastore: the node's addresses, its Node resource, default pools.

As calico/node's startup: resolve `IP`/`IP6` (explicit, `autodetect`, `none`, or unset = keep
what the Node already has), refuse an address another Node already uses, then create or update
the Node, changing only spec.bgp's ipv4Address, ipv6Address and asNumber (labels, route
reflector cluster ID and the rest are kept). Writes are compare-and-swap with retries
(`ResourceClient.update`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from calico.datastore.client import ResourceClient, ResourceExists
from calico.model.base import ObjectMeta
from calico.model.network import (
    ClusterInformation,
    IPPool,
    IPPoolSpec,
    Node,
    NodeBGPSpec,
    OrchRef,
)
from calico.node.autodetect import AutodetectError, InterfaceAddress, detect, local_prefix
from calico.node.config import AUTODETECT, NONE, NodeSettings

log = logging.getLogger(__name__)
_ATTEMPTS = 20


class NodeStartupError(RuntimeError):
    """Start-up cannot continue (no address found, address conflict...)."""


def resolve_address(
    setting: str | None,
    saved: str | None,
    version: int,
    detect_address: Callable[[], str],
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
    name = "IP6" if version == 6 else "IP"
    try:
        return detect_address()
    except AutodetectError as exc:
        if saved:  # as calico/node: keep the Node's address when detection fails
            log.warning("%s: autodetection failed (%s); keeping %s", name, exc, saved)
            return saved
        raise NodeStartupError(f"{name}: autodetection failed: {exc}") from None


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
    reach: Callable[[str, int], str] | None = None,
    *,
    addresses_only: bool = False,
) -> Node:
    """Create or update this node's Node resource; returns what is stored.

    `addresses` lists the host's interface addresses; `reach` finds the source address
    towards a destination (can-reach=; default: a UDP socket in this namespace).
    `addresses_only` (calico/node's address monitor) leaves AS and orchRefs as stored."""
    ipv4_setting = settings.ip
    if ipv4_setting not in (None, AUTODETECT, NONE) and not settings.ip_has_prefix:
        # IP without a prefix length: the interface's, else /32 (calico/node's GetLocalCIDR)
        ip = ipv4_setting.split("/")[0]
        ipv4_setting = local_prefix(ip, addresses()) or ipv4_setting

    def registered(existing: Node | None) -> Node:
        bgp = existing.spec.bgp if existing else None
        if not settings.networking:  # policy only: calico/node leaves the addresses alone
            ipv4 = bgp.ipv4Address if bgp else None
            ipv6 = bgp.ipv6Address if bgp else None
        else:
            ipv4, ipv6 = _addresses(settings, ipv4_setting, bgp, addresses, reach)
        if settings.check_ip_conflicts and settings.networking:
            others = [n for n in client.list(Node).items if isinstance(n, Node)]
            check_conflicts(others, settings.nodename, ipv4, ipv6)
        asn = None if addresses_only else settings.as_number
        wanted = merged_node(existing, settings.nodename, ipv4, ipv6, asn)
        if settings.k8s_node_ref and not addresses_only:
            ref = OrchRef(nodeName=settings.k8s_node_ref, orchestrator="k8s")
            wanted = wanted.model_copy(
                update={"spec": wanted.spec.model_copy(update={"orchRefs": [ref]})}
            )
        return wanted

    result = client.update_or_create(Node, settings.nodename, None, registered, attempts=_ATTEMPTS)
    if result.changed:
        bgp = result.resource.spec.bgp or NodeBGPSpec()
        log.info(
            "registered node %s (IPv4 %s, IPv6 %s)",
            settings.nodename,
            bgp.ipv4Address,
            bgp.ipv6Address,
        )
    return result.resource


def _addresses(
    settings: NodeSettings,
    ipv4_setting: str | None,
    bgp: NodeBGPSpec | None,
    addresses: Callable[[], Sequence[InterfaceAddress]],
    reach: Callable[[str, int], str] | None,
) -> tuple[str | None, str | None]:
    ipv4 = resolve_address(
        ipv4_setting,
        bgp.ipv4Address if bgp else None,
        4,
        lambda: detect(settings.ip_method, 4, addresses, reach),
    )
    ipv6 = resolve_address(
        settings.ip6,
        bgp.ipv6Address if bgp else None,
        6,
        lambda: detect(settings.ip6_method, 6, addresses, reach),
    )
    return ipv4, ipv6


def ensure_default_pools(client: ResourceClient, settings: NodeSettings) -> None:
    """`CALICO_IPV4POOL_*`/`CALICO_IPV6POOL_*`: a default pool when none of that family
    exists (unlike Calico, no pool is invented when the CIDR variable is unset)."""
    pools = [p for p in client.list(IPPool).items if isinstance(p, IPPool)]
    for version, default in ((4, settings.ipv4_pool), (6, settings.ipv6_pool)):
        if default is None:
            continue
        if any(ipaddress.ip_network(p.spec.cidr).version == version for p in pools):
            continue
        pool = IPPool(
            metadata=ObjectMeta(name=f"default-ipv{version}-ippool"),
            spec=IPPoolSpec(
                cidr=default.cidr,
                blockSize=default.block_size,
                natOutgoing=default.nat_outgoing or None,
                nodeSelector=default.node_selector,
                disableBGPExport=default.disable_bgp_export or None,
                vxlanMode=default.vxlan_mode,
            ),
        )
        try:
            client.create(pool)
            log.info("created IP pool default-ipv%d-ippool %s", version, default.cidr)
        except ResourceExists:
            pass


def merge_cluster_types(client: ResourceClient, types: Sequence[str]) -> None:
    """CLUSTER_TYPE: add its comma-separated types to ClusterInformation `default`."""
    if not types:
        return

    def merged(info: ClusterInformation) -> ClusterInformation:
        have = [t for t in (info.spec.clusterType or "").split(",") if t]
        merged = have + [t for t in types if t not in have]
        if merged == have:
            return info
        spec = info.spec.model_copy(update={"clusterType": ",".join(merged)})
        return info.model_copy(update={"spec": spec})

    client.update(ClusterInformation, "default", None, merged, attempts=_ATTEMPTS)
