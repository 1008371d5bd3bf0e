"""Failover between endpoints against a real etcd: a watch whose connection is cut resumes on
the next endpoint from the next unseen revision (no gap, no repeat, no error to the caller); a
write whose reply is lost after etcd applied it is sent again only when its guard makes that
safe (create, update), and a blind put is not."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from calico.datastore.etcd import EtcdBackend
from calico.datastore.etcd_gateway import OutcomeUnknown
from calico.datastore.etcd_watch import EtcdWatch, _shutdown_socket
from calico.testing.etcd_server import EtcdServer
from calico.testing.recording import reading

BackendFactory = Callable[..., EtcdBackend]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_a_cut_watch_resumes_on_the_next_endpoint(
    etcd_server: EtcdServer, make_backend: BackendFactory, caplog: pytest.LogCaptureFixture
) -> None:
    backend = make_backend(endpoints=(etcd_server.endpoint, etcd_server.unix_endpoint))
    first = backend.put("/r/a", b"1")
    watch = backend.watch("/r/", first)
    assert isinstance(watch, EtcdWatch)
    with reading(watch) as reader:
        reader.wait_events(1)
        # As when its member dies: the connection ends under the reader.
        _shutdown_socket(watch._response)  # type: ignore[arg-type]
        second = backend.put("/r/b", b"2")
        events = reader.wait_events(2)
        backend.put("/r/c", b"3")
        events = reader.wait_events(3)
        assert reader.error is None
    assert [(e.key, e.mod_revision) for e in events[:2]] == [("/r/a", first), ("/r/b", second)]
    assert [e.key for e in events] == ["/r/a", "/r/b", "/r/c"]  # nothing missed or repeated
    assert any("on another member" in r.message for r in caplog.records)


@contextmanager
def applied_but_unanswered(endpoint: str) -> Iterator[str]:
    """An endpoint that hands each request to etcd, waits for etcd's answer (so the request
    was applied) and then drops the connection: the client cannot know the outcome."""
    target = urlsplit(endpoint)
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, socket.create_connection((target.hostname, target.port)) as up:
                up.sendall(_request(conn))
                up.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        thread.join(5)


def _request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def test_guarded_writes_are_sent_again_and_blind_puts_are_not(
    etcd_server: EtcdServer, make_backend: BackendFactory
) -> None:
    plain = make_backend()
    with applied_but_unanswered(etcd_server.endpoint) as lossy:

        def backend() -> EtcdBackend:  # each one tries the lossy endpoint first
            return make_backend(endpoints=(lossy, etcd_server.endpoint))

        created = backend().create("/g/k", b"v1")  # applied, unanswered, sent again: ours
        assert plain.get("/g/k").mod_revision == created  # type: ignore[union-attr]
        updated = backend().update("/g/k", b"v2", created)
        kv = plain.get("/g/k")
        assert kv is not None and (kv.value, kv.mod_revision) == (b"v2", updated)
        with pytest.raises(OutcomeUnknown, match="outcome unknown"):
            backend().put("/g/k", b"v3")  # applied, but a blind put is not sent again
        kv = plain.get("/g/k")
        assert kv is not None and kv.value == b"v3" and kv.mod_revision == updated + 1
