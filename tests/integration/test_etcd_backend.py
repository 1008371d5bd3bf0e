"""EtcdBackend against a real etcd: CRUD/CAS, listings, leases, watches, failures, failover."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer

BackendFactory = Callable[..., EtcdBackend]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class WatchReader:
    """Iterates a watch in a thread, collecting events and the exception that ended it."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self.watch:
                with self._cond:
                    self.events.extend(batch)
                    self._cond.notify_all()
        except BaseException as exc:
            self.error = exc
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_events(self, count: int, timeout: float = 10.0) -> list[WatchEvent]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.events) >= count or self._done, timeout)
            assert len(self.events) >= count, f"watch ended early: {self.error!r}"
            return list(self.events)

    def wait_done(self, timeout: float = 10.0) -> BaseException | None:
        with self._cond:
            assert self._cond.wait_for(lambda: self._done, timeout), "watch still running"
        return self.error

    def close(self) -> None:
        self.watch.close()
        self._thread.join(10)


@contextmanager
def reading(watch: Watch) -> Iterator[WatchReader]:
    reader = WatchReader(watch)
    try:
        yield reader
    finally:
        reader.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    waiting.wait_until(predicate, timeout, interval=0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_crud_round_trip(backend: EtcdBackend) -> None:
    assert backend.get("/t/k") is None
    rev = backend.create("/t/k", b"v1")
    kv = backend.get("/t/k")
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"v1", rev, rev)
    rev2 = backend.update("/t/k", b"v2", rev)
    assert rev2 > rev
    rev3 = backend.put("/t/k", b"v3")
    assert rev3 > rev2
    deleted = backend.delete("/t/k")
    assert (deleted.value, deleted.mod_revision) == (b"v3", rev3)
    assert backend.get("/t/k") is None


def test_create_existing_key_fails(backend: EtcdBackend) -> None:
    backend.create("/t/k", b"v1")
    with pytest.raises(KeyExists):
        backend.create("/t/k", b"v2")
    assert backend.get("/t/k").value == b"v1"  # type: ignore[union-attr]


def test_cas_update_conflict_and_not_found(backend: EtcdBackend) -> None:
    rev = backend.create("/t/k", b"v1")
    backend.update("/t/k", b"v2", rev)
    with pytest.raises(RevisionConflict):
        backend.update("/t/k", b"v3", rev)
    with pytest.raises(KeyNotFound):
        backend.update("/t/absent", b"v", rev)
    with pytest.raises(KeyNotFound):
        backend.update("/t/absent", b"v", 0)  # mod_revision 0 must not create the key
    assert backend.get("/t/absent") is None


def test_cas_delete(backend: EtcdBackend) -> None:
    rev = backend.create("/t/k", b"v1")
    with pytest.raises(RevisionConflict):
        backend.delete("/t/k", rev - 1)
    assert backend.delete("/t/k", rev).value == b"v1"
    with pytest.raises(KeyNotFound):
        backend.delete("/t/k", rev)
    with pytest.raises(KeyNotFound):
        backend.delete("/t/k")


def test_list_pages_through_many_keys(make_backend: BackendFactory) -> None:
    backend = make_backend(page_size=7)
    for i in range(50):
        backend.put(f"/many/{i:03d}", str(i).encode())
    backend.put("/manz", b"outside")
    listing = backend.list("/many/")
    assert [kv.key for kv in listing.items] == [f"/many/{i:03d}" for i in range(50)]
    assert listing.revision == backend.put("/other", b"x") - 1


def test_list_is_consistent_across_pages(make_backend: BackendFactory) -> None:
    """Writes landing between two pages must not show up in the listing."""
    backend = make_backend(page_size=2)
    for i in range(6):
        backend.put(f"/c/{i}", b"old")
    writer = make_backend()
    gateway = backend._gateway
    real_call = gateway.call
    calls = 0

    def call_then_write(path: str, body: dict[str, object], **kwargs: bool) -> dict[str, object]:
        nonlocal calls
        result = real_call(path, body, **kwargs)
        calls += 1
        if calls == 1:
            writer.put("/c/5", b"new")
            writer.put("/c/9", b"new")
            writer.delete("/c/4")
        return result

    gateway.call = call_then_write  # type: ignore[method-assign]
    listing = backend.list("/c/")
    assert calls == 3
    assert [(kv.key, kv.value) for kv in listing.items] == [(f"/c/{i}", b"old") for i in range(6)]


def test_list_restarts_when_compaction_overtakes_paging(make_backend: BackendFactory) -> None:
    backend = make_backend(page_size=2)
    for i in range(5):
        backend.put(f"/c/{i}", b"old")
    writer = make_backend()
    real_call = backend._gateway.call
    calls = 0

    def call_then_compact(path: str, body: dict[str, object], **kwargs: bool) -> dict[str, object]:
        nonlocal calls
        calls += 1
        result = real_call(path, body, **kwargs)
        if calls == 1:
            writer.compact(writer.put("/c/4", b"new"))
        return result

    backend._gateway.call = call_then_compact  # type: ignore[method-assign]
    listing = backend.list("/c/")
    assert calls == 5  # page 1, page 2 (compacted), then a fresh 3-page listing
    assert [kv.value for kv in listing.items] == [b"old"] * 4 + [b"new"]


def test_list_prefix_boundaries(backend: EtcdBackend) -> None:
    for key in ("/a/b", "/a/bc", "/a/bc/d", "/a/bd", "/a/b/e", "/a/bc\u00e9", "/a/c"):
        backend.put(key, b"x")
    assert [kv.key for kv in backend.list("/a/bc").items] == ["/a/bc", "/a/bc/d", "/a/bc\u00e9"]
    assert [kv.key for kv in backend.list("/a/b/").items] == ["/a/b/e"]
    assert len(backend.list("").items) == 7


def test_lease_expiry_deletes_key_and_watch_sees_it(backend: EtcdBackend) -> None:
    lease = backend.grant_lease(1)
    rev = backend.put("/l/k", b"v", lease=lease)
    assert backend.get("/l/k").lease == lease  # type: ignore[union-attr]
    with reading(backend.watch("/l/", rev + 1)) as reader:
        (event,) = reader.wait_events(1)
    assert (event.type, event.key, event.value) == (EventType.DELETE, "/l/k", None)
    assert backend.get("/l/k") is None
    with pytest.raises(KeyNotFound):
        backend.keepalive(lease)


def test_keepalive_extends_lease(backend: EtcdBackend) -> None:
    lease = backend.grant_lease(1)
    backend.put("/l/k", b"v", lease=lease)
    # Time itself is the subject: keep the lease alive for well past its TTL.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert backend.keepalive(lease) == 1
        time.sleep(0.2)
    assert backend.get("/l/k") is not None
    backend.revoke_lease(lease)
    assert backend.get("/l/k") is None
    with pytest.raises(KeyNotFound):
        backend.revoke_lease(lease)


def test_put_with_unknown_lease_fails(backend: EtcdBackend) -> None:
    with pytest.raises(KeyNotFound):
        backend.put("/l/k", b"v", lease=12345)


def test_watch_delivers_events_in_order(backend: EtcdBackend) -> None:
    start = backend.put("/w/ignored-before", b"x") + 1
    with reading(backend.watch("/w/", start)) as reader:
        revs = [backend.put("/w/a", b"1"), backend.put("/w/b", b"2"), backend.put("/x/c", b"3")]
        revs.append(backend.update("/w/a", b"4", revs[0]))
        backend.delete("/w/b")
        revs.append(revs[-1] + 1)  # nothing else writes: the delete is the next revision
        events = reader.wait_events(4)
    assert [(e.type, e.key, e.value) for e in events] == [
        (EventType.PUT, "/w/a", b"1"),
        (EventType.PUT, "/w/b", b"2"),
        (EventType.PUT, "/w/a", b"4"),
        (EventType.DELETE, "/w/b", None),
    ]
    assert [e.mod_revision for e in events] == [revs[0], revs[1], revs[3], revs[4]]


def test_watch_from_compacted_revision(backend: EtcdBackend) -> None:
    first = backend.put("/w/k", b"1")
    for i in range(3):
        backend.put("/w/k", str(i).encode())
    latest = backend.put("/w/k", b"last")
    backend.compact(latest)
    backend.compact(latest)  # already compacted: a no-op
    with pytest.raises(WatchCompacted) as info:
        for _ in backend.watch("/w/", first):
            pass
    assert info.value.compact_revision == latest
    with reading(backend.watch("/w/", latest)) as reader:  # the compact revision itself is kept
        assert reader.wait_events(1)[0].value == b"last"


def test_compact_future_revision_is_an_error(backend: EtcdBackend) -> None:
    with pytest.raises(DatastoreError):
        backend.compact(backend.put("/k", b"v") + 100)


def test_watch_close_from_another_thread(backend: EtcdBackend) -> None:
    reader = WatchReader(backend.watch("/w/", 0))
    reader.watch.close()
    assert reader.wait_done(timeout=5) is None


def test_idle_watch_stays_healthy(
    make_backend: BackendFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Silence longer than the idle timeout is probed and survived, not reported."""
    backend = make_backend(watch_idle_timeout=0.3, request_timeout=5)
    with (
        caplog.at_level(logging.DEBUG, "calico.datastore.etcd_watch"),
        reading(backend.watch("/w/", 0)) as reader,
    ):
        # The scenario: four idle timeouts in a row, each probed.
        wait_until(lambda: sum("idle for" in r.message for r in caplog.records) >= 4)
        rev = backend.put("/w/k", b"v")
        assert reader.wait_events(1)[0].mod_revision == rev
        assert reader.error is None
    assert any("idle" in record.message for record in caplog.records)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_watch_fails_when_etcd_goes_away(
    etcd_server: EtcdServer, backend: EtcdBackend, how: str
) -> None:
    rev = backend.put("/w/k", b"v")
    with reading(backend.watch("/w/", rev)) as reader:
        assert reader.wait_events(1)[0].mod_revision == rev
        getattr(etcd_server, how)()
        assert isinstance(reader.wait_done(), DatastoreUnavailable)


def test_watch_detects_a_hung_etcd(etcd_server: EtcdServer, make_backend: BackendFactory) -> None:
    """A frozen server keeps the TCP connection up; the idle probe must notice it."""
    backend = make_backend(watch_idle_timeout=0.5, request_timeout=0.5)
    pid = etcd_server.pid
    assert pid is not None
    with reading(backend.watch("/w/", backend.put("/w/k", b"v"))) as reader:
        reader.wait_events(1)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert isinstance(reader.wait_done(), DatastoreUnavailable)
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(15)
def test_unreachable_endpoint_raises_unavailable(make_backend: BackendFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    backend = make_backend(endpoints=(dead,))
    with pytest.raises(DatastoreUnavailable, match=dead):
        backend.get("/k")
    with pytest.raises(DatastoreUnavailable, match=dead):
        backend.put("/k", b"v")
    with pytest.raises(DatastoreUnavailable, match=dead):
        for _ in backend.watch("/", 0):
            pass


@pytest.mark.timeout(15)
def test_silent_server_raises_unavailable(make_backend: BackendFactory) -> None:
    """A peer that accepts TCP but never answers must time out, not hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend = make_backend(endpoints=(endpoint,), request_timeout=0.5)
        with pytest.raises(DatastoreUnavailable, match=endpoint):
            backend.get("/k")
        with pytest.raises(DatastoreUnavailable, match="outcome unknown"):
            backend.create("/k", b"v")
        with pytest.raises(DatastoreUnavailable, match=endpoint):
            for _ in backend.watch("/", 0):
                pass


def test_failover_to_the_next_endpoint(
    etcd_server: EtcdServer, make_backend: BackendFactory
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    backend = make_backend(endpoints=(dead, etcd_server.endpoint))
    rev = backend.create("/f/k", b"v")
    assert backend.get("/f/k").mod_revision == rev  # type: ignore[union-attr]
    with reading(backend.watch("/f/", rev)) as reader:
        assert reader.wait_events(1)[0].key == "/f/k"


def test_values_and_keys_round_trip_bytes(backend: EtcdBackend) -> None:
    value = bytes(range(256))
    backend.put("/bin/\u2603", value)
    (kv,) = backend.list("/bin/").items
    assert (kv.key, kv.value) == ("/bin/\u2603", value)


def test_unix_socket_endpoint_reaches_the_same_store(etcd_server: EtcdServer) -> None:
    tcp = EtcdBackend(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    unix = EtcdBackend(EtcdConfig(endpoints=(etcd_server.unix_endpoint,)))
    try:
        revision = tcp.put("/unix/a", b"1")
        kv = unix.get("/unix/a")
        assert kv is not None and kv.value == b"1" and kv.mod_revision == revision
        unix.put("/unix/b", b"2")
        assert [kv.key for kv in tcp.list("/unix/").items] == ["/unix/a", "/unix/b"]
    finally:
        tcp.close()
        unix.close()


def test_test_server_restarts_after_a_kill(etcd_server: EtcdServer) -> None:
    etcd_server.kill()
    etcd_server.start()
    backend = EtcdBackend(EtcdConfig(endpoints=(etcd_server.unix_endpoint,)))
    try:
        backend.put("/after/kill", b"1")
    finally:
        backend.close()
