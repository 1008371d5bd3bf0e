"""EtcdBackend against a real etcd, beyond the Backend contract (test_backend_contract.py):
paging, lease expiry in real time, idle and failed watches, failover, unix sockets."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable

import pytest

from calico.datastore.api import (
    DatastoreUnavailable,
    EventType,
    KeyNotFound,
)
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer
from calico.testing.recording import reading

BackendFactory = Callable[..., EtcdBackend]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    waiting.wait_until(predicate, timeout, interval=0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
