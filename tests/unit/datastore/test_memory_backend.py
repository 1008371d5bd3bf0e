"""MemoryBackend keeps etcd's semantics: revisions, CAS, leases, watches, compaction."""

from __future__ import annotations

import threading

import pytest

from calico.datastore.api import (
    DatastoreError,
    DatastoreUnavailable,
    EventType,
    KeyExists,
    KeyNotFound,
    RevisionConflict,
    Watch,
    WatchCompacted,
    WatchEvent,
)
from calico.datastore.memory import MemoryBackend
from calico.testing.clock import ManualClock

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def backend(clock: ManualClock) -> MemoryBackend:
    return MemoryBackend(now=clock)


def next_batch(watch: Watch) -> list[WatchEvent]:
    return list(next(iter(watch)))


def test_crud_and_revisions(backend: MemoryBackend) -> None:
    rev = backend.create("/k", b"v1")
    assert rev == 2  # an empty store is at revision 1, like etcd
    kv = backend.get("/k")
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"v1", rev, rev)
    rev2 = backend.update("/k", b"v2", rev)
    rev3 = backend.put("/k", b"v3")
    assert rev < rev2 < rev3
    assert backend.get("/k").create_revision == rev  # type: ignore[union-attr]
    assert backend.delete("/k").value == b"v3"
    assert backend.get("/k") is None
    assert backend.revision == rev3 + 1


def test_create_and_cas_errors(backend: MemoryBackend) -> None:
    rev = backend.create("/k", b"v1")
    with pytest.raises(KeyExists):
        backend.create("/k", b"v2")
    backend.update("/k", b"v2", rev)
    with pytest.raises(RevisionConflict):
        backend.update("/k", b"v3", rev)
    with pytest.raises(RevisionConflict):
        backend.delete("/k", rev)
    with pytest.raises(KeyNotFound):
        backend.update("/absent", b"v", 0)
    with pytest.raises(KeyNotFound):
        backend.delete("/absent")


def test_list_prefix_boundaries(backend: MemoryBackend) -> None:
    for key in ("/a/bd", "/a/bc/d", "/a/b", "/a/bc"):
        backend.put(key, b"x")
    listing = backend.list("/a/bc")
    assert [kv.key for kv in listing.items] == ["/a/bc", "/a/bc/d"]
    assert listing.revision == backend.revision


def test_lease_expiry_deletes_keys_with_a_watch_event(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    lease = backend.grant_lease(5)
    rev = backend.put("/l/a", b"a", lease=lease)
    backend.put("/l/b", b"b", lease=lease)
    watch = backend.watch("/l/", rev + 2)
    clock.now += 4
    assert backend.keepalive(lease) == 5
    clock.now += 4
    backend.expire_leases()
    assert backend.get("/l/a") is not None
    clock.now += 2
    backend.expire_leases()
    assert backend.list("/l/").items == []
    events = next_batch(watch)
    assert [(e.type, e.key) for e in events] == [
        (EventType.DELETE, "/l/a"),
        (EventType.DELETE, "/l/b"),
    ]
    assert {e.mod_revision for e in events} == {rev + 2}  # one revision, as in etcd
    with pytest.raises(KeyNotFound):
        backend.keepalive(lease)


def test_revoke_and_unknown_leases(backend: MemoryBackend) -> None:
    lease = backend.grant_lease(5)
    backend.put("/l/a", b"a", lease=lease)
    backend.put("/l/a", b"a")  # re-put without the lease detaches the key
    backend.put("/l/b", b"b", lease=lease)
    backend.revoke_lease(lease)
    assert [kv.key for kv in backend.list("/l/").items] == ["/l/a"]
    with pytest.raises(KeyNotFound):
        backend.revoke_lease(lease)
    with pytest.raises(KeyNotFound):
        backend.put("/l/c", b"c", lease=lease)


def test_watch_replays_history_in_order(backend: MemoryBackend) -> None:
    start = backend.put("/w/a", b"1")
    backend.put("/x/b", b"2")
    backend.delete("/w/a")
    events = next_batch(backend.watch("/w/", start))
    assert [(e.type, e.key, e.value, e.mod_revision) for e in events] == [
        (EventType.PUT, "/w/a", b"1", start),
        (EventType.DELETE, "/w/a", None, start + 2),
    ]


def test_watch_from_now_blocks_until_an_event(backend: MemoryBackend) -> None:
    backend.put("/w/old", b"x")
    watch = backend.watch("/w/", 0)
    batches: list[list[WatchEvent]] = []
    reader = threading.Thread(target=lambda: batches.append(next_batch(watch)))
    reader.start()
    rev = backend.put("/w/new", b"y")
    reader.join(5)
    assert [(e.key, e.mod_revision) for e in batches[0]] == [("/w/new", rev)]


def test_watch_from_compacted_revision(backend: MemoryBackend) -> None:
    first = backend.put("/w/k", b"1")
    latest = backend.put("/w/k", b"2")
    backend.compact(latest)
    backend.compact(first)  # older than the compaction: no-op
    with pytest.raises(WatchCompacted) as info:
        next_batch(backend.watch("/w/", first))
    assert info.value.compact_revision == latest
    assert next_batch(backend.watch("/w/", latest))[0].value == b"2"
    with pytest.raises(DatastoreError):
        backend.compact(latest + 10)


def test_lagging_watch_is_compacted(backend: MemoryBackend) -> None:
    """A watch that has not consumed history yet loses it, like etcd's unsynced watchers."""
    watch = iter(backend.watch("/w/", backend.put("/w/k", b"1")))
    next(watch)
    backend.put("/w/k", b"2")
    backend.compact(backend.put("/w/k", b"3"))
    with pytest.raises(WatchCompacted):
        next(watch)


def test_caught_up_watch_survives_compaction(backend: MemoryBackend) -> None:
    """Compacting history the watch had no events in does not cancel it (as in etcd)."""
    watch = backend.watch("/w/", 0)
    backend.put("/other", b"x")
    backend.compact(backend.put("/other", b"y"))
    rev = backend.put("/w/k", b"v")
    assert [e.mod_revision for e in next_batch(watch)] == [rev]


def test_close_ends_iteration_from_another_thread(backend: MemoryBackend) -> None:
    watch = backend.watch("/w/", 0)
    threading.Timer(0.05, watch.close).start()
    assert list(watch) == []


def test_unavailable(backend: MemoryBackend) -> None:
    watch = backend.watch("/w/", 0)
    backend.set_unavailable(True)
    with pytest.raises(DatastoreUnavailable):
        backend.get("/k")
    with pytest.raises(DatastoreUnavailable):
        next_batch(watch)
    backend.set_unavailable(False)
    backend.put("/k", b"v")
