"""Block affinity: claiming a block for a host, and finding a block worth claiming.

A claim is libcalico-go's two-phase protocol (`ipam_block_reader_writer.go`): write the host's
affinity as `pending`, create the block carrying `affinity: host:<node>` (create fails if the
block exists, so only one host can win), then mark the affinity `confirmed`. A loser deletes its
pending affinity. An affinity whose block is missing is completed by creating the block; one
whose block names another host is stale and deleted; an unconfirmed one whose block is ours is
confirmed after a block write that invalidates concurrent readers (`getBlockFromAffinity`).

`find_usable_block` walks the pools' blocks in the host's pseudo-random order and returns the
first that does not exist yet, or that is already the host's and has room (`findUsableBlock`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from calico.datastore.api import KeyExists, KeyNotFound
from calico.ipam.blocks import HOST_AFFINITY_PREFIX, AllocationBlock, candidate_blocks
from calico.ipam.pools import block_size
from calico.ipam.records import AffinityState, BlockAffinity
from calico.ipam.store import RACES, IPAMStore, Stored
from calico.ipam.undo import UndoLog
from calico.model.network import IPPool

log = logging.getLogger(__name__)


class AffinityClaimer:
    def __init__(self, store: IPAMStore, now: Callable[[], float]) -> None:
        self.store = store
        self._now = now

    def claim(self, host: str, cidr: str, undo: UndoLog) -> Stored[AllocationBlock] | None:
        """Claim the block for host; its stored block, or None if another host owns it."""
        undo.claims.add((host, cidr))
        self._pending(host, cidr)
        stamp = self._now()
        claim_time = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        block = AllocationBlock.new(cidr, host, int(stamp * 1e9), claim_time)
        try:
            stored = self.store.create_block(block)
            log.info("host %s claimed new IPAM block %s", host, cidr)
        except KeyExists:
            existing = self.store.get_block(cidr)
            if existing is None:
                raise KeyNotFound(f"block {cidr} vanished during claim") from None
            if existing.value.affinity != f"{HOST_AFFINITY_PREFIX}{host}":
                self._drop_pending(host, cidr)
                undo.claims.discard((host, cidr))
                return None
            stored = existing
        self._confirm(host, cidr)
        undo.claims.discard((host, cidr))
        return stored

    def block_from_affinity(
        self, host: str, cidr: str, undo: UndoLog, listed: Stored[BlockAffinity] | None = None
    ) -> Stored[AllocationBlock] | None:
        """The host's block for an affinity it holds, completing or dropping the affinity.
        `listed`: the affinity as just listed, used by the first attempt instead of a read
        (one etcd round trip less per CNI ADD); a lost race reads it again."""
        known = [listed] if listed is not None else []

        def attempt() -> Stored[AllocationBlock] | None:
            aff = known.pop() if known else self.store.get_affinity(host, cidr)
            if aff is None:
                return None
            stored = self.store.get_block(cidr)
            if stored is None:
                return self.claim(host, cidr, undo)
            if stored.value.affinity != f"{HOST_AFFINITY_PREFIX}{host}":
                log.warning("deleting stale affinity of %s for block %s", host, cidr)
                self.store.delete_affinity(host, cidr, aff.revision)
                return None
            if aff.value.state is not AffinityState.CONFIRMED:
                undo.claims.add((host, cidr))
                self._pending(host, cidr)
                stored = self.store.write_block(stored)
                self._confirm(host, cidr)
                undo.claims.discard((host, cidr))
            return stored

        return self.store.retrying(f"affinity {host} {cidr}", attempt)

    def settle(self, host: str, cidr: str) -> None:
        """Finish or drop an unconfirmed affinity after a failed claim (idempotent)."""

        def attempt() -> None:
            aff = self.store.get_affinity(host, cidr)
            if aff is None or aff.value.state is AffinityState.CONFIRMED:
                return
            block = self.store.get_block(cidr)
            if block is not None and block.value.affinity == f"{HOST_AFFINITY_PREFIX}{host}":
                aff.value.state = AffinityState.CONFIRMED
                self.store.update_affinity(host, cidr, aff)
            else:
                self.store.delete_affinity(host, cidr, aff.revision)

        self.store.retrying(f"affinity {host} {cidr}", attempt)

    def find_usable_block(self, host: str, pools: Sequence[IPPool], version: int) -> str | None:
        """A block CIDR to claim: unclaimed, or the host's own with room; None if none."""
        existing = {s.value.cidr: s.value for s in self.store.list_blocks(version)}
        mine = f"{HOST_AFFINITY_PREFIX}{host}"
        for pool in pools:
            for cidr in candidate_blocks(pool.spec.cidr, block_size(pool), host):
                block = existing.get(cidr)
                if block is None or (block.affinity == mine and block.num_free > 0):
                    return cidr
        return None

    def _pending(self, host: str, cidr: str) -> None:
        """Create the host's affinity as pending, or mark an unconfirmed one pending."""

        def attempt() -> None:
            try:
                self.store.create_affinity(host, cidr, BlockAffinity(AffinityState.PENDING))
                return
            except KeyExists:
                aff = self.store.get_affinity(host, cidr)
            if aff is None:
                raise KeyNotFound(f"affinity {host} {cidr} vanished")
            if aff.value.state is not AffinityState.CONFIRMED:
                aff.value.state = AffinityState.PENDING
                self.store.update_affinity(host, cidr, aff)

        self.store.retrying(f"affinity {host} {cidr}", attempt)

    def _confirm(self, host: str, cidr: str) -> None:
        def attempt() -> None:
            aff = self.store.get_affinity(host, cidr)
            if aff is None:
                self.store.create_affinity(host, cidr, BlockAffinity(AffinityState.CONFIRMED))
            elif aff.value.state is not AffinityState.CONFIRMED:
                aff.value.state = AffinityState.CONFIRMED
                self.store.update_affinity(host, cidr, aff)

        self.store.retrying(f"affinity {host} {cidr}", attempt)

    def _drop_pending(self, host: str, cidr: str) -> None:
        """Delete our pending affinity for a block another host won (best effort, as Calico)."""
        aff = self.store.get_affinity(host, cidr)
        if aff is not None and aff.value.state is not AffinityState.CONFIRMED:
            try:
                self.store.delete_affinity(host, cidr, aff.revision)
            except RACES:
                log.info("affinity %s %s changed while dropping it", host, cidr)
