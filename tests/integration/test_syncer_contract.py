"""The Syncer over both backends, one suite: MemoryBackend (unmarked) and a real etcd (marked
integration), via the `store` fixture (conftest.py). Snapshot in batches, live updates in
revision order, and an exact resync when its watch falls behind a compaction; then, on etcd
only, an exact resync across an etcd restart. Outages, backoff, stop and consumer failures,
which need MemoryBackend's switches, are in tests/unit/datastore/test_syncer_memory.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from calico.datastore.api import Backend, SyncStatus, Update, UpdateKind, Watch, WatchEvent
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.syncer import Syncer
from calico.testing.etcd_server import EtcdServer
from calico.testing.recording import RecordingCallbacks, running

pytestmark = pytest.mark.timeout(60)

PREFIXES = ("/calico/resources/v3/a/", "/calico/resources/v3/b/")
A, B = PREFIXES
READY = [SyncStatus.WAIT_FOR_READY, SyncStatus.RESYNC, SyncStatus.IN_SYNC]


class BatchRecorder(RecordingCallbacks):
    """Also records the size of each on_updates call."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def on_updates(self, updates: Sequence[Update]) -> None:
        super().on_updates(updates)
        self.batch_sizes.append(len(updates))


class PausableWatches:
    """A backend whose watches pause() drops and holds; resume() reopens each where it stopped.

    This is a consumer whose watch stops progressing while the store moves on (and maybe
    gets compacted), which a real client sees after a long network partition. Everything but
    `watch` is the wrapped backend's.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.cond = threading.Condition()
        self.paused = False
        self.inner: set[Watch] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return _ResumingWatch(self, prefix, start_revision)

    def pause(self) -> None:
        with self.cond:
            self.paused = True
            for inner in self.inner:
                inner.close()

    def resume(self) -> None:
        with self.cond:
            self.paused = False
            self.cond.notify_all()


class _ResumingWatch:
    def __init__(self, owner: PausableWatches, prefix: str, start_revision: int) -> None:
        self._owner, self._prefix, self._next = owner, prefix, start_revision
        self._closed = False
        self._inner: Watch | None = None

    def __iter__(self) -> Iterator[Sequence[WatchEvent]]:
        owner = self._owner
        while True:
            with owner.cond:
                owner.cond.wait_for(lambda: self._closed or not owner.paused)
                if self._closed:
                    return
                self._inner = owner.backend.watch(self._prefix, self._next)
                owner.inner.add(self._inner)
            try:
                for batch in self._inner:
                    self._next = batch[-1].mod_revision + 1
                    yield batch
            finally:
                with owner.cond:
                    owner.inner.discard(self._inner)

    def close(self) -> None:
        with self._owner.cond:
            self._closed = True
            self._owner.cond.notify_all()
            if self._inner is not None:
                self._inner.close()


def syncer(backend: Backend | PausableWatches, consumer: RecordingCallbacks) -> Syncer:
    return Syncer(backend, PREFIXES, consumer, batch_size=3, max_backoff=0.5)  # type: ignore[arg-type]


def seed(backend: Backend) -> None:
    for i in range(5):
        backend.put(f"{A}{i}", b"a%d" % i)
        backend.put(f"{B}{i}", b"b%d" % i)
    backend.put("/calico/resources/v3/ab", b"outside both prefixes")
    backend.put("/calico/resources/v3/c/0", b"not synced")


def change_everything(backend: Backend) -> dict[str, UpdateKind]:
    """Add, modify, delete, delete-then-recreate and rewrite-unchanged keys; returns the
    expected difference."""
    backend.put(f"{A}new", b"new")
    backend.put(f"{A}1", b"modified")
    backend.delete(f"{B}2")
    backend.delete(f"{B}3")
    backend.put(f"{B}3", b"b3")  # same value, new mod_revision: still an update
    backend.put(f"{B}4", b"b4")  # likewise
    backend.put("/calico/resources/v3/c/1", b"not synced")
    return {
        f"{A}new": UpdateKind.NEW,
        f"{A}1": UpdateKind.UPDATED,
        f"{B}2": UpdateKind.DELETED,
        f"{B}3": UpdateKind.UPDATED,
        f"{B}4": UpdateKind.UPDATED,
    }


def test_snapshot_in_batches_then_live_updates(store: Backend) -> None:
    seed(store)
    consumer = BatchRecorder()
    with running(syncer(store, consumer)):
        consumer.wait_for(consumer.in_sync_with(store, PREFIXES))
        assert consumer.statuses == READY
        assert consumer.batch_sizes == [3, 3, 3, 1]
        assert {u.kind for u in consumer.updates} == {UpdateKind.NEW}
        consumer.clear_history()
        change_everything(store)
        consumer.wait_for(consumer.in_sync_with(store, PREFIXES))
    # Live, the delete-and-recreate of B3 arrives as it happened, in revision order.
    assert [(u.key, u.kind) for u in consumer.updates] == [
        (f"{A}new", UpdateKind.NEW),
        (f"{A}1", UpdateKind.UPDATED),
        (f"{B}2", UpdateKind.DELETED),
        (f"{B}3", UpdateKind.DELETED),
        (f"{B}3", UpdateKind.NEW),
        (f"{B}4", UpdateKind.UPDATED),
    ]
    revisions = [u.revision for u in consumer.updates]
    assert revisions == sorted(revisions)
    assert consumer.statuses == []


def test_resync_across_compaction_hands_over_the_difference(store: Backend) -> None:
    backend = PausableWatches(store)
    seed(store)
    consumer = RecordingCallbacks()
    with running(syncer(backend, consumer)):
        consumer.wait_for(consumer.in_sync_with(store, PREFIXES))
        backend.pause()
        consumer.clear_history()
        expected = change_everything(store)
        store.compact(store.put("/calico/other", b"x"))
        backend.resume()
        consumer.wait_for(consumer.in_sync_with(store, PREFIXES))
    assert consumer.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
    assert consumer.kinds() == expected


@pytest.mark.integration
@pytest.mark.parametrize("change", [False, True])
def test_resync_across_etcd_restart(
    etcd_server: EtcdServer, backend: EtcdBackend, change: bool
) -> None:
    seed(backend)
    consumer = RecordingCallbacks()
    with running(syncer(backend, consumer)):
        consumer.wait_for(consumer.in_sync_with(backend, PREFIXES))
        consumer.clear_history()
        etcd_server.stop()
        consumer.wait_for(lambda: consumer.status is SyncStatus.RESYNC)
        expected: dict[str, UpdateKind] = {}
        if change:  # the same data dir served elsewhere meanwhile, so the syncer cannot see it
            with EtcdServer(data_dir=etcd_server.data_dir) as other:
                other_backend = EtcdBackend(EtcdConfig(endpoints=(other.endpoint,)))
                expected = change_everything(other_backend)
                other_backend.close()
        etcd_server.start()
        consumer.wait_for(consumer.in_sync_with(backend, PREFIXES))
    assert consumer.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
    assert consumer.kinds() == expected
