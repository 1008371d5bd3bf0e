"""MemoryBackend beyond the Backend contract (tests/integration/test_backend_contract.py, which
runs it and a real etcd through the same suite): an injected clock, lagging watches, outages."""

from __future__ import annotations

import pytest

from calico.datastore.api import (
    DatastoreUnavailable,
    EventType,
    KeyNotFound,
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


def test_unavailable(backend: MemoryBackend) -> None:
    watch = backend.watch("/w/", 0)
    backend.set_unavailable(True)
    with pytest.raises(DatastoreUnavailable):
        backend.get("/k")
    with pytest.raises(DatastoreUnavailable):
        next_batch(watch)
    backend.set_unavailable(False)
    backend.put("/k", b"v")
