"""The datastore seam: a small typed key/value interface with revisions.

Everything above this module (typed resource client, syncers' consumers, calicoctl, Felix)
sees only these types. `calico.datastore.etcd` implements `Backend` over a real etcd v3
server; `calico.datastore.memory` implements it in memory for pure unit tests.

Invariants:
- Keys are `str` paths (e.g. `/calico/resources/v3/...`), values are `bytes`.
- Every mutation returns the store revision it produced; `KeyValue.mod_revision` is the
  revision a compare-and-swap must quote.
- Failures are typed `DatastoreError`s, never bare transport exceptions, and never hangs:
  an unreachable store raises `DatastoreUnavailable` within a bounded time.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from calico.model.sync import SyncStatus as SyncStatus  # part of the syncer interface

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatastoreError(Exception):
    """Base class of all datastore failures."""


class DatastoreUnavailable(DatastoreError):
    """No endpoint answered (connection refused, timeout, TLS failure...)."""


class DatastoreTlsError(DatastoreUnavailable):
    """Every endpoint failed the TLS handshake (a CA that does not match, no client certificate
    or one etcd does not trust): a configuration error that waiting does not fix."""


class KeyExists(DatastoreError):
    """create() of a key that is already present."""


class KeyNotFound(DatastoreError):
    """update()/delete() of a key that is absent."""


class RevisionConflict(DatastoreError):
    """A compare-and-swap found a different mod_revision than the caller quoted."""


class Raced(DatastoreError):
    """A compare-and-swap write found its key created, changed or deleted since it was read."""


class KeepsChanging(DatastoreError):
    """A read-modify-write lost the race to other writers on every one of its attempts."""


class WatchCompacted(DatastoreError):
    """A watch asked for history that etcd has compacted away; the caller must re-list."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"watch start revision is compacted (compact revision {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes | None  # None for DELETE
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Listing:
    items: Sequence[KeyValue]
    revision: int  # the store revision the listing is consistent at


class Watch(Protocol):
    """An open watch stream. Iterating yields batches of events in revision order.

    Iteration raises `WatchCompacted` when the start revision was compacted and
    `DatastoreUnavailable` when the connection is lost (including an etcd restart); it never
    stalls silently. `close()` may be called from another thread to end the iteration.
    """

    def __iter__(self) -> Iterator[Sequence[WatchEvent]]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def get(self, key: str) -> KeyValue | None: ...

    def list(self, prefix: str) -> Listing: ...

    def create(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write `key` only if absent (else KeyExists); returns the new mod_revision."""
        ...

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        """CAS write: KeyNotFound if absent, RevisionConflict if mod_revision differs."""
        ...

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional upsert; returns the new mod_revision."""
        ...

    def delete(self, key: str, mod_revision: int | None = None) -> KeyValue:
        """Delete (CAS when mod_revision is given); returns the deleted value."""
        ...

    def grant_lease(self, ttl_seconds: int) -> int: ...

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL, raises KeyNotFound if expired."""
        ...

    def revoke_lease(self, lease_id: int) -> None: ...

    def watch(self, prefix: str, start_revision: int) -> Watch: ...

    def compact(self, revision: int) -> None: ...

    def close(self) -> None: ...


def cas_write(backend: Backend, key: str, read: KeyValue | None, value: bytes) -> int:
    """Write value over what key held when read (None: absent); Raced if that changed since.

    Returns the new mod_revision."""
    try:
        if read is None:
            return backend.create(key, value)
        return backend.update(key, value, read.mod_revision)
    except (KeyExists, KeyNotFound, RevisionConflict) as exc:
        raise Raced(f"{key} changed since it was read: {exc}") from None


def retry_races(what: str, attempt: Callable[[], T], attempts: int) -> T:
    """Run a read-modify-write (which raises Raced when it loses) until it wins, at most
    `attempts` times; then KeepsChanging. Only Raced is retried: any other error the attempt
    raises (including a conflict it reports on purpose) ends the loop."""
    for _ in range(attempts):
        try:
            return attempt()
        except Raced as exc:
            log.debug("%s; retrying", exc)
    raise KeepsChanging(f"{what} kept changing; gave up after {attempts} attempts")


class UpdateKind(enum.Enum):
    NEW = "new"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Update:
    """One change handed to a syncer consumer. value is None for DELETED."""

    kind: UpdateKind
    key: str
    value: bytes | None
    revision: int


class SyncerCallbacks(Protocol):
    def on_status(self, status: SyncStatus) -> None: ...

    def on_updates(self, updates: Sequence[Update]) -> None: ...


UpdateHandler = Callable[[Sequence[Update]], None]
