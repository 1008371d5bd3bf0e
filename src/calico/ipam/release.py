"""Releasing addresses: by address, by handle, and exactly (the undo of a failed assignment,
and `ipam release --from-report`, which frees only allocations unchanged since the report).

Blocks are written first, then handles (as libcalico-go's releaseIPsFromBlock), so an outage in
between leaves a handle over-counted, never an address allocated without its handle. A block
left empty and without affinity is deleted, as Calico does; affine empty blocks stay with their
host. Handle counts are fixed through `Patience`, so a release that freed addresses does not
then fail on the bookkeeping because etcd blinked.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Sequence

from calico.datastore.api import DatastoreError
from calico.ipam.blocks import ReleaseResult, ReleaseSpec, block_cidr_for
from calico.ipam.pools import block_size, pool_containing
from calico.ipam.store import IPAMStore
from calico.ipam.undo import Patience
from calico.model.network import IPPool

log = logging.getLogger(__name__)


class Releaser:
    def __init__(self, store: IPAMStore, patience: Callable[[], Patience]) -> None:
        self.store = store
        self._patience = patience

    def release_ips(self, addresses: Sequence[str], pools: Sequence[IPPool]) -> list[str]:
        """Release addresses (any pool, even disabled); returns those not allocated."""
        result = self.release([ReleaseSpec(a) for a in addresses], pools)
        missing = set(result.unallocated)
        return [a for a in dict.fromkeys(addresses) if a in missing]

    def release(self, specs: Sequence[ReleaseSpec], pools: Sequence[IPPool]) -> ReleaseResult:
        """Release each address whose allocation still matches its spec's handle and sequence
        number (when given); the result says which were released, unallocated, mismatched."""
        by_block: dict[str, list[ReleaseSpec]] = {}
        total = ReleaseResult()
        scanned: list[str] | None = None
        for spec in {s.address: s for s in specs}.values():
            pool = pool_containing(pools, spec.address)
            if pool is not None:
                cidr: str | None = block_cidr_for(spec.address, block_size(pool))
            else:  # not in a pool: look for a block holding it (Calico's full scan)
                if scanned is None:
                    scanned = [s.value.cidr for s in self.store.list_blocks()]
                cidr = next((c for c in scanned if _contains(c, spec.address)), None)
            if cidr is None:
                total.unallocated.append(spec.address)
            else:
                by_block.setdefault(cidr, []).append(spec)
        for cidr, group in by_block.items():
            result = self._release_from_block(cidr, group)
            total.released += result.released
            total.unallocated += result.unallocated
            total.mismatched += result.mismatched
        return total

    def release_by_handle(self, handle_id: str) -> None:
        """Release a handle's addresses in every block it names; then delete it, or recount it
        if it changed meanwhile."""
        stored = self.store.get_handle(handle_id)
        if stored is None:
            return
        cidrs = list(stored.value.block)
        for cidr in cidrs:
            self.store.retrying(
                f"block {cidr}", functools.partial(self._by_handle, cidr, handle_id)
            )
        # None of the handle's addresses is left in those blocks as last read or written, so
        # the handle as read above is now empty: delete it on that revision, without reading
        # it and the blocks again (two etcd round trips per CNI DEL). If another writer
        # counted an allocation under it since (allocations count the handle before writing
        # the block), the compare fails and the counts are taken from the blocks.
        try:
            self.store.delete_handle(handle_id, stored.revision)
            return
        except DatastoreError as exc:
            log.info("handle %s changed while releasing (%s): recounting it", handle_id, exc)
        self._patience().run(lambda: self.store.sync_handle(handle_id, cidrs))

    def release_exact(self, cidr: str, specs: Sequence[ReleaseSpec]) -> None:
        """Release addresses only where handle and sequence number still match (idempotent)."""

        def attempt() -> None:
            stored = self.store.get_block(cidr)
            if stored is not None and stored.value.release(specs).released:
                self.store.save_released(stored)

        self.store.retrying(f"block {cidr}", attempt)

    def _release_from_block(self, cidr: str, specs: list[ReleaseSpec]) -> ReleaseResult:
        def attempt() -> ReleaseResult:
            stored = self.store.get_block(cidr)
            if stored is None:
                return ReleaseResult(unallocated=[s.address for s in specs])
            result = stored.value.release(specs)
            if result.released:
                self.store.save_released(stored)
            return result

        result = self.store.retrying(f"block {cidr}", attempt)
        patience = self._patience()
        for handle_id, count in result.handle_counts.items():
            patience.run(functools.partial(self.store.adjust_handle, handle_id, cidr, -count))
        return result

    def _by_handle(self, cidr: str, handle_id: str) -> None:
        stored = self.store.get_block(cidr)
        if stored is not None and stored.value.release_by_handle(handle_id):
            self.store.save_released(stored)


def _contains(cidr: str, address: str) -> bool:
    net = ipaddress.ip_network(cidr)
    ip = ipaddress.ip_address(address)
    return ip.version == net.version and ip in net
