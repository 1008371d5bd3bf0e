"""Keeps a consumer's view of some key prefixes equal to the datastore, across any failure.

Role: a background thread that lists a snapshot at revision R, then watches from R+1, and hands
the consumer raw `Update`s (NEW/UPDATED/DELETED, bytes in, no decoding) plus a `SyncStatus`.

Several prefixes are served by ONE listing and ONE watch of their longest common prefix,
filtered client-side: a single listing is trivially consistent at one revision, and one watch
from its revision + 1 misses nothing in between. (Give disjoint subtrees their own syncers when
that common prefix would be much wider than the prefixes.)

Invariants towards the consumer:
- status starts WAIT_FOR_READY, goes RESYNC once the datastore answers, IN_SYNC once the
  snapshot is delivered; any failure (compaction, outage, etcd restart) reports RESYNC at once,
  then the syncer retries with capped exponential backoff until IN_SYNC again — never a silent
  stall;
- the syncer remembers what it told the consumer, so a re-list hands over exactly the
  difference: NEW only for keys the consumer does not have, UPDATED/DELETED only for keys it
  has, nothing for unchanged keys.
Any other exception (typically from a consumer callback) stops the syncer and is kept in
`failure`: the consumer's state is unknown then, so a supervisor should restart the process.
The thread, its stop() and the retry loop are calico.datastore.watching's WatchThread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from calico.backoff import Backoff
from calico.datastore.api import (
    Backend,
    DatastoreError,
    DatastoreUnavailable,
    EventType,
    Listing,
    SyncerCallbacks,
    SyncStatus,
    Update,
    UpdateKind,
    WatchEvent,
)
from calico.datastore.watching import WatchThread

_log = logging.getLogger(__name__)


class Syncer(WatchThread):
    def __init__(
        self,
        backend: Backend,
        prefixes: Sequence[str],
        callbacks: SyncerCallbacks,
        *,
        name: str = "syncer",
        batch_size: int = 500,
        initial_backoff: float = 0.1,
        max_backoff: float = 10.0,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """sleep/clock are injectable for tests; the default sleep wakes up early on stop()."""
        if not prefixes:
            raise ValueError("Syncer needs at least one prefix")
        # A spell in sync as long as the longest wait makes the next failure a fresh incident.
        super().__init__(
            name, Backoff(initial_backoff, max_backoff, stable_after=max_backoff), sleep=sleep
        )
        self._backend = backend
        self._prefixes = tuple(prefixes)
        self._common = _common_prefix(self._prefixes)
        self._callbacks = callbacks
        self._batch_size = batch_size
        self._clock = clock
        self._known: dict[str, tuple[bytes, int]] = {}  # what the consumer was told
        self._status: SyncStatus | None = None
        self._in_sync_at: float | None = None

    @property
    def status(self) -> SyncStatus | None:
        return self._status

    def _run(self) -> None:
        self._set_status(SyncStatus.WAIT_FOR_READY)
        super()._run()

    def _cycle(self) -> None:
        revision = self._resync()
        self._watch_from(revision + 1)

    def _retry_delay(self, exc: DatastoreError) -> float:
        """Report the loss of sync, then wait out the backoff before the next re-list."""
        if self._status is SyncStatus.IN_SYNC:
            self._set_status(SyncStatus.RESYNC)
        # The spell in sync ends here; failures that follow it have no spell of their own.
        in_sync_at, self._in_sync_at = self._in_sync_at, None
        delay = self._backoff.delay(None if in_sync_at is None else self._clock() - in_sync_at)
        _log.warning("%s: %s: %s; re-listing in %.1fs", self.name, type(exc).__name__, exc, delay)
        return delay

    def _resync(self) -> int:
        """List, hand over the difference to what the consumer has, report IN_SYNC."""
        listing = self._backend.list(self._common)
        if self._status is not SyncStatus.RESYNC:
            self._set_status(SyncStatus.RESYNC)
        self._deliver(self._diff(listing))
        self._set_status(SyncStatus.IN_SYNC)
        self._in_sync_at = self._clock()
        _log.info(
            "%s: in sync at revision %d (%d keys)", self.name, listing.revision, len(self._known)
        )
        return listing.revision

    def _watch_from(self, revision: int) -> None:
        with self._watching(self._backend.watch(self._common, revision)) as batches:
            for events in batches:
                self._deliver(self._apply_events(events))
        if not self._stop.is_set():
            raise DatastoreUnavailable("watch ended without an error")

    def _diff(self, listing: Listing) -> list[Update]:
        current = {kv.key: kv for kv in listing.items if self._wanted(kv.key)}
        updates: list[Update] = []
        for key in sorted(current):
            kv = current[key]
            known = self._known.get(key)
            if known != (kv.value, kv.mod_revision):
                kind = UpdateKind.NEW if known is None else UpdateKind.UPDATED
                updates.append(Update(kind, key, kv.value, kv.mod_revision))
                self._known[key] = (kv.value, kv.mod_revision)
        for key in sorted(self._known.keys() - current.keys()):
            updates.append(Update(UpdateKind.DELETED, key, None, listing.revision))
            del self._known[key]
        return updates

    def _apply_events(self, events: Iterable[WatchEvent]) -> list[Update]:
        updates: list[Update] = []
        for event in events:
            if not self._wanted(event.key):
                continue
            known = event.key in self._known
            if event.type is EventType.DELETE or event.value is None:
                if known:
                    del self._known[event.key]
                    updates.append(Update(UpdateKind.DELETED, event.key, None, event.mod_revision))
                continue
            kind = UpdateKind.UPDATED if known else UpdateKind.NEW
            self._known[event.key] = (event.value, event.mod_revision)
            updates.append(Update(kind, event.key, event.value, event.mod_revision))
        return updates

    def _deliver(self, updates: Sequence[Update]) -> None:
        for start in range(0, len(updates), self._batch_size):
            self._callbacks.on_updates(updates[start : start + self._batch_size])

    def _set_status(self, status: SyncStatus) -> None:
        self._status = status
        self._callbacks.on_status(status)

    def _wanted(self, key: str) -> bool:
        return key.startswith(self._prefixes)


def _common_prefix(prefixes: Sequence[str]) -> str:
    first, last = min(prefixes), max(prefixes)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[:length]
