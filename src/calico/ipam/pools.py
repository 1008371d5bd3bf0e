"""Which IP pools an allocation may use (pure; Calico's `determinePools` + `filterPoolsByUse`).

Requested pools (by name or CIDR) must exist and be enabled, and are then used whatever their
nodeSelector says (as Calico, for backwards compatibility). Without a request, every enabled
pool of the family in Automatic assignment mode whose nodeSelector matches the host's Node labels
is a candidate. Either way the pool's allowedUses must include the intended use ("Workload" for
CNI, "Tunnel" for a node's tunnel address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from calico.ipam.api import NoPoolsAvailable
from calico.model.fields import SELECT_ALL, is_select_all
from calico.model.network import IPPool

if TYPE_CHECKING:
    from calico.selector import Selector

USE_WORKLOAD = "Workload"
USE_TUNNEL = "Tunnel"


def pool_version(pool: IPPool) -> int:
    return ipaddress.ip_network(pool.spec.cidr).version


def block_size(pool: IPPool) -> int:
    return pool.spec.blockSize or (26 if pool_version(pool) == 4 else 122)


def selects_node(pool: IPPool, node_labels: Mapping[str, str]) -> bool:
    return selects_any_node(pool) or _node_selector(pool).evaluate(node_labels)


def selects_any_node(pool: IPPool) -> bool:
    return is_select_all(pool.spec.nodeSelector or SELECT_ALL)


def _node_selector(pool: IPPool) -> Selector:
    from calico.selector import parse

    return parse(pool.spec.nodeSelector or SELECT_ALL)


def _find(pools: Sequence[IPPool], wanted: str) -> IPPool | None:
    for pool in pools:
        if pool.name == wanted:
            return pool
    try:
        net = ipaddress.ip_network(wanted)
    except ValueError:
        return None
    return next((p for p in pools if ipaddress.ip_network(p.spec.cidr) == net), None)


def select_pools(
    pools: Sequence[IPPool],
    version: int,
    requested: Sequence[str],
    host: str,
    node_labels: Mapping[str, str],
    use: str = USE_WORKLOAD,
) -> list[IPPool]:
    """The pools to allocate from, in order; NoPoolsAvailable if there are none."""
    enabled = [p for p in pools if not p.spec.disabled and pool_version(p) == version]
    if requested:
        chosen = []
        for wanted in requested:
            pool = _find(enabled, wanted)
            if pool is None:
                raise NoPoolsAvailable(
                    f"the given pool ({wanted}) does not exist, or is not enabled"
                )
            chosen.append(pool)
    else:
        chosen = [
            p
            for p in enabled
            if (p.spec.assignmentMode or "Automatic") == "Automatic"
            and selects_node(p, node_labels)
        ]
        if not chosen:
            raise NoPoolsAvailable(f"no configured Calico IPv{version} pools for node {host}")
    usable = [p for p in chosen if use in (p.spec.allowedUses or (USE_WORKLOAD, USE_TUNNEL))]
    if not usable:
        raise NoPoolsAvailable(f"no IPv{version} pool for node {host} allows use {use}")
    return usable


def pool_containing(pools: Sequence[IPPool], address: str) -> IPPool | None:
    ip = ipaddress.ip_address(address)
    for pool in pools:
        net = ipaddress.ip_network(pool.spec.cidr)
        if ip.version == net.version and ip in net:
            return pool
    return None


def pool_for_block(pools: Sequence[IPPool], cidr: str) -> IPPool | None:
    """The pool a block CIDR lies in (None: an orphaned block)."""
    block = ipaddress.ip_network(cidr)
    for pool in pools:
        net = ipaddress.ip_network(pool.spec.cidr)
        if block.version == net.version and block.subnet_of(net):  # type: ignore[arg-type]
            return pool
    return None
