"""Syncer over a real etcd: snapshot, live updates, and exact resync after compaction/restart."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest

from calico.datastore.api import Backend, SyncStatus, UpdateKind, Watch, WatchEvent
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.syncer import Syncer
from calico.testing.etcd_server import EtcdServer
from calico.testing.recording import RecordingCallbacks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PREFIXES = ("/calico/resources/v3/a/", "/calico/resources/v3/b/")
A, B = PREFIXES


class PausableEtcdBackend(EtcdBackend):
    """pause() drops every watch stream and holds it; resume() reopens it where it stopped.

    This is a consumer whose watch stops progressing while the store moves on (and maybe
    gets compacted), which a real client sees after a long network partition.
    """

    def __init__(self, config: EtcdConfig) -> None:
        super().__init__(config)
        self._cond = threading.Condition()
        self._paused = False
        self._inner: set[Watch] = set()

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return _ResumingWatch(self, prefix, start_revision)

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            for inner in self._inner:
                inner.close()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()


class _ResumingWatch:
    def __init__(self, backend: PausableEtcdBackend, prefix: str, start_revision: int) -> None:
        self._backend, self._prefix, self._next = backend, prefix, start_revision
        self._closed = False
        self._inner: Watch | None = None

    def __iter__(self) -> Iterator[Sequence[WatchEvent]]:
        backend = self._backend
        while True:
            with backend._cond:
                backend._cond.wait_for(lambda: self._closed or not backend._paused)
                if self._closed:
                    return
                self._inner = EtcdBackend.watch(backend, self._prefix, self._next)
                backend._inner.add(self._inner)
            try:
                for batch in self._inner:
                    self._next = batch[-1].mod_revision + 1
                    yield batch
            finally:
                with backend._cond:
                    backend._inner.discard(self._inner)

    def close(self) -> None:
        with self._backend._cond:
            self._closed = True
            self._backend._cond.notify_all()
            if self._inner is not None:
                self._inner.close()


@contextmanager
def running(backend: Backend, consumer: RecordingCallbacks) -> Iterator[Syncer]:
    syncer = Syncer(backend, PREFIXES, consumer, batch_size=3, max_backoff=0.5)
    syncer.start()
    try:
        yield syncer
    finally:
        syncer.stop()
        assert not syncer.is_alive()


def in_sync_with(consumer: RecordingCallbacks, backend: Backend) -> Callable[[], bool]:
    """Predicate: in sync, and the consumer's state equals the store under PREFIXES."""

    def check() -> bool:
        if consumer.status is not SyncStatus.IN_SYNC:
            return False
        items = backend.list("/calico/").items
        return consumer.state == {kv.key: kv.value for kv in items if kv.key.startswith(PREFIXES)}

    return check


def seed(backend: Backend) -> None:
    for i in range(5):
        backend.put(f"{A}{i}", b"a%d" % i)
        backend.put(f"{B}{i}", b"b%d" % i)
    backend.put("/calico/resources/v3/c/0", b"not synced")


def change_everything(backend: Backend) -> dict[str, UpdateKind]:
    """Add, modify, delete, and delete-then-recreate keys; returns the expected difference."""
    backend.put(f"{A}new", b"new")
    backend.put(f"{A}1", b"modified")
    backend.delete(f"{B}2")
    backend.delete(f"{B}3")
    backend.put(f"{B}3", b"b3")  # same value, new mod_revision: still an update
    backend.put("/calico/resources/v3/c/1", b"not synced")
    return {
        f"{A}new": UpdateKind.NEW,
        f"{A}1": UpdateKind.UPDATED,
        f"{B}2": UpdateKind.DELETED,
        f"{B}3": UpdateKind.UPDATED,
    }


def received(consumer: RecordingCallbacks) -> dict[str, UpdateKind]:
    kinds = {u.key: u.kind for u in consumer.updates}
    assert len(kinds) == len(consumer.updates), f"duplicate updates: {consumer.updates}"
    return kinds


def test_snapshot_then_live_updates(backend: EtcdBackend) -> None:
    seed(backend)
    consumer = RecordingCallbacks()
    with running(backend, consumer):
        consumer.wait_for(in_sync_with(consumer, backend))
        assert consumer.statuses == [
            SyncStatus.WAIT_FOR_READY,
            SyncStatus.RESYNC,
            SyncStatus.IN_SYNC,
        ]
        assert {u.kind for u in consumer.updates} == {UpdateKind.NEW}
        assert len(consumer.updates) == 10
        consumer.clear_history()
        change_everything(backend)
        consumer.wait_for(in_sync_with(consumer, backend))
    # Live, the delete-and-recreate of B3 arrives as it happened, in revision order.
    assert [(u.key, u.kind) for u in consumer.updates] == [
        (f"{A}new", UpdateKind.NEW),
        (f"{A}1", UpdateKind.UPDATED),
        (f"{B}2", UpdateKind.DELETED),
        (f"{B}3", UpdateKind.DELETED),
        (f"{B}3", UpdateKind.NEW),
    ]
    revisions = [u.revision for u in consumer.updates]
    assert revisions == sorted(revisions)
    assert consumer.statuses == []


def test_resync_across_compaction(etcd_server: EtcdServer) -> None:
    backend = PausableEtcdBackend(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    try:
        seed(backend)
        consumer = RecordingCallbacks()
        with running(backend, consumer):
            consumer.wait_for(in_sync_with(consumer, backend))
            backend.pause()
            consumer.clear_history()
            expected = change_everything(backend)
            backend.compact(backend.put("/calico/other", b"x"))
            backend.resume()
            consumer.wait_for(in_sync_with(consumer, backend))
        assert consumer.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
        assert received(consumer) == expected
    finally:
        backend.close()


@pytest.mark.parametrize("change", [False, True])
def test_resync_across_etcd_restart(
    etcd_server: EtcdServer, backend: EtcdBackend, change: bool
) -> None:
    seed(backend)
    consumer = RecordingCallbacks()
    with running(backend, consumer):
        consumer.wait_for(in_sync_with(consumer, backend))
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
        consumer.wait_for(in_sync_with(consumer, backend))
    assert consumer.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
    assert received(consumer) == expected
