"""In-memory fakes of the datastore seam: a thread-safe `Backend`, and a recording consumer.

`MemoryBackend` has etcd's semantics, for unit tests of higher layers and --dry-run.

It models what higher layers rely on: one global revision bumped by every mutation, CAS on
mod_revision, leases whose expiry deletes their keys, a history of events that watches replay
from any revision not yet compacted, and compaction that cancels watches which still need the
discarded history (like etcd's unsynced watchers). Time comes from an injectable `now`; leases
expire lazily at the next call or when `expire_leases()` is called, so tests decide when.
`set_unavailable(True)` makes every call and open watch fail with DatastoreUnavailable, to
exercise outage handling without a server. `RecordingCallbacks` is the matching consumer
fake: it mirrors a syncer's updates into a dict and checks the update contract.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from calico.datastore.api import (
    DatastoreError,
    DatastoreUnavailable,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Listing,
    RevisionConflict,
    WatchCompacted,
    WatchEvent,
)


@dataclass(slots=True)
class _Lease:
    ttl: int
    expires_at: float
    keys: set[str] = field(default_factory=set)


class MemoryBackend:
    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._cond = threading.Condition()
        self._data: dict[str, KeyValue] = {}
        self._history: list[WatchEvent] = []  # ascending mod_revision, from compact_revision on
        self._revision = 1  # like etcd, an empty store is at revision 1
        self._compact_revision = 0
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 0x1000
        self._unavailable = False
        self._watches: weakref.WeakSet[MemoryWatch] = weakref.WeakSet()

    @property
    def revision(self) -> int:
        return self._revision

    def get(self, key: str) -> KeyValue | None:
        with self._locked():
            return self._data.get(key)

    def list(self, prefix: str) -> Listing:
        with self._locked():
            items = sorted((kv for k, kv in self._data.items() if k.startswith(prefix)), key=_key)
            return Listing(items=items, revision=self._revision)

    def create(self, key: str, value: bytes, lease: int = 0) -> int:
        with self._locked():
            if key in self._data:
                raise KeyExists(key)
            return self._put_locked(key, value, lease)

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        with self._locked():
            self._check_cas_locked(key, mod_revision)
            return self._put_locked(key, value, lease)

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        with self._locked():
            return self._put_locked(key, value, lease)

    def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        with self._locked():
            previous = self._check_cas_locked(key, mod_revision)
            self._revision += 1
            self._delete_locked(key)
            return previous

    def grant_lease(self, ttl_seconds: int) -> int:
        with self._locked():
            self._next_lease += 1
            self._leases[self._next_lease] = _Lease(ttl_seconds, self._now() + ttl_seconds)
            return self._next_lease

    def keepalive(self, lease_id: int) -> int:
        with self._locked():
            lease = self._lease_locked(lease_id)
            lease.expires_at = self._now() + lease.ttl
            return lease.ttl

    def revoke_lease(self, lease_id: int) -> None:
        with self._locked():
            self._revoke_locked(self._lease_locked(lease_id))
            del self._leases[lease_id]

    def expire_leases(self) -> None:
        """Delete the keys of every lease whose TTL has run out by `now()`."""
        with self._cond:
            self._expire_locked()

    def watch(self, prefix: str, start_revision: int) -> MemoryWatch:
        with self._locked():
            watch = MemoryWatch(self, prefix, start_revision or self._revision + 1)
            if watch.next_revision < self._compact_revision:
                watch.compacted = self._compact_revision
            self._watches.add(watch)
            return watch

    def compact(self, revision: int) -> None:
        """Forget history before revision; watches that still need it get WatchCompacted."""
        with self._locked():
            if revision > self._revision:
                raise DatastoreError(f"compact({revision}): future revision ({self._revision})")
            if revision <= self._compact_revision:
                return
            self._compact_revision = revision
            cut = bisect.bisect_left(self._history, revision, key=lambda e: e.mod_revision)
            for watch in self._watches:
                watch.on_compaction_locked(revision, self._history[:cut])
            del self._history[:cut]
            self._cond.notify_all()

    def set_unavailable(self, unavailable: bool) -> None:
        with self._cond:
            self._unavailable = unavailable
            self._cond.notify_all()

    def close(self) -> None:
        """Nothing to release; watches end through their own close()."""

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock, fail while unavailable, and expire leases first."""
        with self._cond:
            if self._unavailable:
                raise DatastoreUnavailable("memory backend set unavailable")
            self._expire_locked()
            yield

    def _put_locked(self, key: str, value: bytes, lease: int) -> int:
        if lease and lease not in self._leases:
            raise KeyNotFound(f"lease {lease:x} not found")
        old = self._data.get(key)
        if old is not None and old.lease:
            self._leases[old.lease].keys.discard(key)
        if lease:
            self._leases[lease].keys.add(key)
        self._revision += 1
        created = old.create_revision if old is not None else self._revision
        self._data[key] = KeyValue(key, value, self._revision, created, lease)
        self._history.append(WatchEvent(EventType.PUT, key, value, self._revision))
        self._cond.notify_all()
        return self._revision

    def _delete_locked(self, key: str) -> None:
        """Remove key at the current (already bumped) revision."""
        old = self._data.pop(key)
        if old.lease:
            self._leases[old.lease].keys.discard(key)
        self._history.append(WatchEvent(EventType.DELETE, key, None, self._revision))
        self._cond.notify_all()

    def _check_cas_locked(self, key: str, mod_revision: int | None) -> KeyValue:
        current = self._data.get(key)
        if current is None:
            raise KeyNotFound(key)
        if mod_revision is not None and current.mod_revision != mod_revision:
            raise RevisionConflict(
                f"{key}: expected mod_revision {mod_revision}, found {current.mod_revision}"
            )
        return current

    def _lease_locked(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise KeyNotFound(f"lease {lease_id:x} not found or expired")
        return lease

    def _revoke_locked(self, lease: _Lease) -> None:
        """Delete all of a lease's keys in one revision, as etcd does."""
        if lease.keys:
            self._revision += 1
            for key in sorted(lease.keys):
                self._delete_locked(key)

    def _expire_locked(self) -> None:
        now = self._now()
        for lease_id, lease in list(self._leases.items()):
            if lease.expires_at <= now:
                self._revoke_locked(lease)
                del self._leases[lease_id]

    def _events_locked(self, prefix: str, start: int) -> Sequence[WatchEvent]:
        if self._unavailable:
            raise DatastoreUnavailable("memory backend set unavailable")
        first = bisect.bisect_left(self._history, start, key=lambda e: e.mod_revision)
        return [e for e in self._history[first:] if e.key.startswith(prefix)]


class MemoryWatch:
    """Blocks on the backend's condition variable until events, an error or close()."""

    def __init__(self, backend: MemoryBackend, prefix: str, start_revision: int) -> None:
        self._backend = backend
        self._prefix = prefix
        self.next_revision = start_revision
        self.compacted = 0  # the compact revision that took history this watch still needed
        self._closed = False

    def __iter__(self) -> Iterator[Sequence[WatchEvent]]:
        cond = self._backend._cond
        while True:
            with cond:
                events = self._wait_locked()
            if not events:
                return
            self.next_revision = events[-1].mod_revision + 1
            yield events

    def close(self) -> None:
        with self._backend._cond:
            self._closed = True
            self._backend._cond.notify_all()

    def on_compaction_locked(self, revision: int, discarded: Sequence[WatchEvent]) -> None:
        """Cancel the watch only if the discarded history held events it has not yet seen."""
        if self.next_revision >= revision:
            return
        if any(
            e.mod_revision >= self.next_revision and e.key.startswith(self._prefix)
            for e in discarded
        ):
            self.compacted = revision
        else:
            self.next_revision = revision

    def _wait_locked(self) -> Sequence[WatchEvent]:
        while not self._closed:
            if self.compacted:
                raise WatchCompacted(self.compacted)
            events = self._backend._events_locked(self._prefix, self.next_revision)
            if events:
                return events
            self.next_revision = self._backend.revision + 1  # nothing for us so far: skip it
            self._backend._cond.wait()
        return []


def _key(kv: KeyValue) -> str:
    return kv.key
