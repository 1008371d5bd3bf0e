"""Address usage per pool and per block, as `calicoctl ipam show` reports it (pure).

Mirrors libcalico-go's GetUtilization: every pool (enabled or not) is a group whose capacity is
the pool's size; each block is counted under the first pool containing it, and blocks in no
pool form a final "orphaned allocation blocks" group with no capacity of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from calico.ipam.blocks import AllocationBlock
from calico.ipam.pools import pool_for_block
from calico.model.network import IPPool

ORPHANED = "orphaned allocation blocks"


@dataclass(frozen=True, slots=True)
class BlockUsage:
    cidr: str
    capacity: int
    in_use: int
    affinity: str | None

    @property
    def free(self) -> int:
        return self.capacity - self.in_use


@dataclass(slots=True)
class PoolUsage:
    name: str
    cidr: str | None  # None for the orphaned-blocks group
    capacity: int
    blocks: list[BlockUsage] = field(default_factory=list)

    @property
    def in_use(self) -> int:
        return sum(b.in_use for b in self.blocks)

    @property
    def free(self) -> int:
        return self.capacity - self.in_use


def _sort_key(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address)


def utilization(pools: Sequence[IPPool], blocks: Sequence[AllocationBlock]) -> list[PoolUsage]:
    ordered = sorted(pools, key=lambda p: _sort_key(p.spec.cidr))
    groups = {
        p.name: PoolUsage(p.name, p.spec.cidr, ipaddress.ip_network(p.spec.cidr).num_addresses)
        for p in ordered
    }
    orphans = PoolUsage(ORPHANED, None, 0)
    for block in sorted(blocks, key=lambda b: _sort_key(b.cidr)):
        pool = pool_for_block(ordered, block.cidr)
        group = groups[pool.name] if pool is not None else orphans
        group.blocks.append(BlockUsage(block.cidr, block.size, block.in_use, block.affinity))
    if orphans.blocks:
        orphans.capacity = sum(b.capacity for b in orphans.blocks)
        return [*groups.values(), orphans]
    return list(groups.values())
