"""The Backend contract, one suite over both backends: MemoryBackend (no marker: it needs no
etcd) and EtcdBackend against a real etcd (marked integration). CRUD/CAS, listings, leases,
watches and compaction must behave the same on both, since the memory one stands in for etcd
in every pure unit test. What only one backend has lives beside it: test_memory_backend.py
(injected clock, unavailability switch), test_etcd_backend.py (paging, failures, failover).
"""

from __future__ import annotations

import threading
import time

import pytest

from calico.datastore.api import (
    Backend,
    DatastoreError,
    EventType,
    KeyExists,
    KeyNotFound,
    RevisionConflict,
    WatchCompacted,
)
from calico.testing.recording import WatchReader, reading

pytestmark = pytest.mark.timeout(60)  # `store`: tests/integration/conftest.py


def test_crud_round_trip(store: Backend) -> None:
    assert store.get("/t/k") is None
    rev = store.create("/t/k", b"v1")
    assert rev == 2  # an empty store is at revision 1
    kv = store.get("/t/k")
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"v1", rev, rev)
    rev2 = store.update("/t/k", b"v2", rev)
    rev3 = store.put("/t/k", b"v3")
    assert rev < rev2 < rev3
    assert store.get("/t/k").create_revision == rev  # type: ignore[union-attr]
    deleted = store.delete("/t/k")
    assert (deleted.value, deleted.mod_revision) == (b"v3", rev3)
    assert store.get("/t/k") is None
    assert store.list("/").revision == rev3 + 1


def test_create_and_cas_errors(store: Backend) -> None:
    rev = store.create("/t/k", b"v1")
    with pytest.raises(KeyExists):
        store.create("/t/k", b"v2")
    assert store.get("/t/k").value == b"v1"  # type: ignore[union-attr]
    store.update("/t/k", b"v2", rev)
    with pytest.raises(RevisionConflict):
        store.update("/t/k", b"v3", rev)
    with pytest.raises(RevisionConflict):
        store.delete("/t/k", rev)
    with pytest.raises(KeyNotFound):
        store.update("/t/absent", b"v", rev)
    with pytest.raises(KeyNotFound):
        store.update("/t/absent", b"v", 0)  # mod_revision 0 must not create the key
    assert store.get("/t/absent") is None
    with pytest.raises(KeyNotFound):
        store.delete("/t/absent")


def test_cas_delete(store: Backend) -> None:
    rev = store.create("/t/k", b"v1")
    with pytest.raises(RevisionConflict):
        store.delete("/t/k", rev - 1)
    assert store.delete("/t/k", rev).value == b"v1"
    with pytest.raises(KeyNotFound):
        store.delete("/t/k", rev)


def test_list_prefix_boundaries(store: Backend) -> None:
    for key in ("/a/b", "/a/bc", "/a/bc/d", "/a/bd", "/a/b/e", "/a/bc\u00e9", "/a/c"):
        store.put(key, b"x")
    listing = store.list("/a/bc")
    assert [kv.key for kv in listing.items] == ["/a/bc", "/a/bc/d", "/a/bc\u00e9"]
    assert [kv.key for kv in store.list("/a/b/").items] == ["/a/b/e"]
    assert len(store.list("").items) == 7
    assert listing.revision == store.put("/other", b"x") - 1


def test_values_and_keys_round_trip_bytes(store: Backend) -> None:
    value = bytes(range(256))
    store.put("/bin/\u2603", value)
    (kv,) = store.list("/bin/").items
    assert (kv.key, kv.value) == ("/bin/\u2603", value)


def test_leases_revoke_detach_and_unknown(store: Backend) -> None:
    lease = store.grant_lease(60)
    assert store.keepalive(lease) == 60
    store.put("/l/a", b"a", lease=lease)
    assert store.get("/l/a").lease == lease  # type: ignore[union-attr]
    store.put("/l/a", b"a")  # re-put without the lease detaches the key
    store.put("/l/b", b"b", lease=lease)
    store.revoke_lease(lease)
    assert [kv.key for kv in store.list("/l/").items] == ["/l/a"]
    with pytest.raises(KeyNotFound):
        store.revoke_lease(lease)
    with pytest.raises(KeyNotFound):
        store.keepalive(lease)
    with pytest.raises(KeyNotFound):
        store.put("/l/c", b"c", lease=lease)
    with pytest.raises(KeyNotFound):
        store.put("/l/c", b"c", lease=12345)


def test_watch_replays_history_in_order(store: Backend) -> None:
    start = store.put("/w/ignored-before", b"x") + 1
    revs = [store.put("/w/a", b"1"), store.put("/w/b", b"2"), store.put("/x/c", b"3")]
    revs.append(store.update("/w/a", b"4", revs[0]))
    store.delete("/w/b")
    revs.append(revs[-1] + 1)  # nothing else writes: the delete is the next revision
    with reading(store.watch("/w/", start)) as reader:
        events = reader.wait_events(4)
    assert [(e.type, e.key, e.value) for e in events] == [
        (EventType.PUT, "/w/a", b"1"),
        (EventType.PUT, "/w/b", b"2"),
        (EventType.PUT, "/w/a", b"4"),
        (EventType.DELETE, "/w/b", None),
    ]
    assert [e.mod_revision for e in events] == [revs[0], revs[1], revs[3], revs[4]]


def test_watch_from_now_sees_only_later_events(store: Backend) -> None:
    store.put("/w/old", b"x")
    with reading(store.watch("/w/", 0)) as reader:
        # "Now" is when the reader's thread starts iterating: write until the watch sees one.
        revisions = []
        while not reader.events and len(revisions) < 100:
            revisions.append(store.put("/w/new", b"y"))
            time.sleep(0.05)
        events = reader.wait_events(1)
    assert events and all(e.key == "/w/new" and e.mod_revision in revisions for e in events)


def test_watch_from_compacted_revision(store: Backend) -> None:
    first = store.put("/w/k", b"1")
    for i in range(3):
        store.put("/w/k", str(i).encode())
    latest = store.put("/w/k", b"last")
    store.compact(latest)
    store.compact(latest)  # already compacted: a no-op
    store.compact(first)  # older than the compaction: a no-op too
    with pytest.raises(WatchCompacted) as info:
        for _ in store.watch("/w/", first):
            pass
    assert info.value.compact_revision == latest
    with reading(store.watch("/w/", latest)) as reader:  # the compact revision itself is kept
        assert reader.wait_events(1)[0].value == b"last"


def test_compact_future_revision_is_an_error(store: Backend) -> None:
    with pytest.raises(DatastoreError):
        store.compact(store.put("/k", b"v") + 100)


def test_watch_close_from_another_thread(store: Backend) -> None:
    reader = WatchReader(store.watch("/w/", 0))
    threading.Timer(0.05, reader.watch.close).start()
    assert reader.wait_done(timeout=5) is None
