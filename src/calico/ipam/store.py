"""Typed, compare-and-swap access to IPAM records over a `Backend`.

Every write quotes the revision it read (create: must be absent), so two allocators can never
both win: the loser sees RevisionConflict/KeyExists/KeyNotFound, re-reads and tries again.
`retrying` runs such a read-modify-write at most `max_retries` (100, as Calico) times, then
raises RetriesExhausted. Writing a block bumps its sequence number (as Calico's updateBlock).

Handle counts are adjusted with the same CAS loop. `sync_handle` instead recounts a handle's
addresses from the blocks themselves: it is how rollback and release-by-handle leave a handle
exactly right even after a write whose outcome was unknown (an etcd outage mid-request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from calico.datastore.api import Backend, KeyExists, KeyNotFound, RevisionConflict
from calico.ipam import keys
from calico.ipam.api import IPAMError, RetriesExhausted
from calico.ipam.blocks import AllocationBlock, BlockFormatError
from calico.ipam.records import BlockAffinity, Handle, RecordFormatError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_RETRIES = 100
RACES = (RevisionConflict, KeyExists, KeyNotFound)


@dataclass(frozen=True, slots=True)
class Stored(Generic[T]):
    """A decoded record and the mod_revision a CAS write of it must quote."""

    value: T
    revision: int


class IPAMStore:
    def __init__(self, backend: Backend, max_retries: int = MAX_RETRIES) -> None:
        self.backend = backend
        self.max_retries = max_retries

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run a read-modify-write until it does not lose a race (bounded).

        Not `ResourceClient.update`/`retry_races`: an IPAM attempt is a transaction over
        several keys (block, affinity, handle), any of whose writes may lose, and it signals
        a lost race itself too (RevisionConflict: "claimed by another host"); the records are
        not v3 resources; the budget is Calico's 100, and running out is an IPAMError
        (RetriesExhausted), the error the CNI plugin and calicoctl ipam handle."""
        for _ in range(self.max_retries):
            try:
                return attempt()
            except RACES as exc:
                log.debug("IPAM CAS race on %s, retrying: %s", what, exc)
        raise RetriesExhausted(
            f"{what}: gave up after {self.max_retries} attempts (excessive concurrent updates)"
        )

    # -- blocks -----------------------------------------------------------------------------

    def get_block(self, cidr: str) -> Stored[AllocationBlock] | None:
        kv = self.backend.get(keys.block_key(cidr))
        if kv is None:
            return None
        try:
            return Stored(AllocationBlock.from_json(kv.value), kv.mod_revision)
        except BlockFormatError as exc:
            raise IPAMError(f"{kv.key}: {exc}") from None

    def list_blocks(self, version: int | None = None) -> list[Stored[AllocationBlock]]:
        """Every decodable block (undecodable ones are logged and skipped)."""
        result = []
        for kv in self.backend.list(keys.blocks_prefix(version)).items:
            try:
                result.append(Stored(AllocationBlock.from_json(kv.value), kv.mod_revision))
            except BlockFormatError as exc:
                log.warning("skipping %s: %s", kv.key, exc)
        return result

    def create_block(self, block: AllocationBlock) -> Stored[AllocationBlock]:
        """Create (KeyExists if someone else's block is already there)."""
        revision = self.backend.create(keys.block_key(block.cidr), block.to_json())
        return Stored(block, revision)

    def write_block(self, stored: Stored[AllocationBlock]) -> Stored[AllocationBlock]:
        block = stored.value
        block.sequence_number += 1
        revision = self.backend.update(keys.block_key(block.cidr), block.to_json(), stored.revision)
        return Stored(block, revision)

    def delete_block(self, stored: Stored[AllocationBlock]) -> None:
        self.backend.delete(keys.block_key(stored.value.cidr), stored.revision)

    def save_released(self, stored: Stored[AllocationBlock]) -> None:
        """Write a block after a release: an empty block with no affinity is deleted."""
        if stored.value.is_empty() and stored.value.affinity is None:
            self.delete_block(stored)
        else:
            self.write_block(stored)

    # -- affinities -------------------------------------------------------------------------

    def get_affinity(self, host: str, cidr: str) -> Stored[BlockAffinity] | None:
        kv = self.backend.get(keys.affinity_key(host, cidr))
        if kv is None:
            return None
        try:
            return Stored(BlockAffinity.from_json(kv.value), kv.mod_revision)
        except RecordFormatError as exc:
            raise IPAMError(f"{kv.key}: {exc}") from None

    def list_affinities(
        self, host: str | None = None, version: int | None = None
    ) -> list[tuple[str, str, Stored[BlockAffinity]]]:
        """(host, block CIDR, affinity) for one host's (or every host's) affinities."""
        result = []
        for kv in self.backend.list(keys.affinities_prefix(host, version)).items:
            parsed = keys.parse_affinity_key(kv.key)
            try:
                if parsed is not None:
                    aff = BlockAffinity.from_json(kv.value)
                    result.append((parsed[0], parsed[1], Stored(aff, kv.mod_revision)))
            except RecordFormatError as exc:
                log.warning("skipping %s: %s", kv.key, exc)
        return result

    def create_affinity(self, host: str, cidr: str, aff: BlockAffinity) -> Stored[BlockAffinity]:
        revision = self.backend.create(keys.affinity_key(host, cidr), aff.to_json())
        return Stored(aff, revision)

    def update_affinity(
        self, host: str, cidr: str, stored: Stored[BlockAffinity]
    ) -> Stored[BlockAffinity]:
        key = keys.affinity_key(host, cidr)
        revision = self.backend.update(key, stored.value.to_json(), stored.revision)
        return Stored(stored.value, revision)

    def delete_affinity(self, host: str, cidr: str, revision: int) -> None:
        self.backend.delete(keys.affinity_key(host, cidr), revision)

    # -- handles ----------------------------------------------------------------------------

    def get_handle(self, handle_id: str) -> Stored[Handle] | None:
        kv = self.backend.get(keys.handle_key(handle_id))
        if kv is None:
            return None
        try:
            return Stored(Handle.from_json(handle_id, kv.value), kv.mod_revision)
        except RecordFormatError as exc:
            raise IPAMError(f"{kv.key}: {exc}") from None

    def list_handles(self) -> list[Stored[Handle]]:
        result = []
        for kv in self.backend.list(keys.HANDLES_PREFIX).items:
            handle_id = keys.parse_handle_key(kv.key)
            try:
                if handle_id is not None:
                    result.append(Stored(Handle.from_json(handle_id, kv.value), kv.mod_revision))
            except RecordFormatError as exc:
                log.warning("skipping %s: %s", kv.key, exc)
        return result

    def delete_handle(self, handle_id: str, revision: int) -> None:
        """CAS delete: KeyNotFound or RevisionConflict if the handle changed since read."""
        self.backend.delete(keys.handle_key(handle_id), revision)

    def adjust_handle(self, handle_id: str, cidr: str, delta: int) -> None:
        """Add delta (may be negative) to a handle's count for a block; CAS, retried.
        A positive delta first tries to create the handle: on a CNI ADD it is new, and the
        create saves the read (one etcd round trip); KeyExists falls back to read-modify-write."""
        if delta > 0:
            fresh = Handle(handle_id)
            fresh.increment(cidr, delta)
            try:
                self.backend.create(keys.handle_key(handle_id), fresh.to_json())
                return
            except KeyExists:
                pass

        def attempt() -> None:
            stored = self.get_handle(handle_id)
            handle = stored.value if stored else Handle(handle_id)
            if delta >= 0:
                handle.increment(cidr, delta)
            elif not handle.decrement(cidr, -delta):
                log.warning("handle %s held fewer than %d addresses in %s", handle_id, -delta, cidr)
            self._save_handle(handle, stored.revision if stored else None)

        self.retrying(f"handle {handle_id}", attempt)

    def sync_handle(self, handle_id: str, cidrs: Iterable[str]) -> None:
        """Set the handle's counts for these blocks (and those it names) from the blocks."""

        def attempt() -> None:
            stored = self.get_handle(handle_id)
            handle = stored.value if stored else Handle(handle_id)
            for cidr in set(cidrs) | set(handle.block):
                block = self.get_block(cidr)
                count = block.value.handle_counts().get(handle_id, 0) if block else 0
                handle.set_count(cidr, count)
            self._save_handle(handle, stored.revision if stored else None)

        self.retrying(f"handle {handle_id}", attempt)

    def _save_handle(self, handle: Handle, revision: int | None) -> None:
        """CAS write; an empty handle is deleted (or not created)."""
        key = keys.handle_key(handle.handle_id)
        if revision is None:
            if not handle.empty:
                self.backend.create(key, handle.to_json())
        elif handle.empty:
            self.backend.delete(key, revision)
        else:
            self.backend.update(key, handle.to_json(), revision)
