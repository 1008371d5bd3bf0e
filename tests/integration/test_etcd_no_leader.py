"""A member without a leader, as etcd's gateway presents one to a client that requires a leader
(what a member cut off from its peers does): unary calls answered 503 "etcdserver: no leader"
and an open watch ended with that error in-stream. In front of it, a real etcd: the watch
resumes there from the next unseen revision (nothing missed or repeated) and writes, even a
blind put, go there because the refusal says nothing was applied. The real partition, with
its figures, is bench/etcd_partition.py and tests/e2e/test_lab_etcd_partition.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from calico.datastore.etcd import EtcdBackend
from calico.datastore.etcd_gateway import NoLeader
from calico.datastore.etcd_watch import EtcdWatch
from calico.testing.etcd_server import EtcdServer
from calico.testing.recording import reading

BackendFactory = Callable[..., EtcdBackend]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NO_LEADER = "etcdserver: no leader"


class _Leaderless(BaseHTTPRequestHandler):
    """Answers as etcd v3.4's gateway does on a member that lost its leader, and records
    each request's path and its require-leader header."""

    seen: list[tuple[str, str | None]]
    lost_after_open: bool  # True: watches open, then end; False: refused like any call

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.path, self.headers.get("Grpc-Metadata-Hasleader")))
        if self.path == "/v3/watch" and self.lost_after_open:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            created = {"result": {"header": {"revision": "1"}, "created": True}}
            error = {"grpc_code": 14, "http_code": 503, "message": NO_LEADER}
            self.wfile.write(f"{json.dumps(created)}\n{json.dumps({'error': error})}\n".encode())
        else:
            body = json.dumps({"error": NO_LEADER, "message": NO_LEADER, "code": 14}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def leaderless(
    lost_after_open: bool = True,
) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """(an endpoint that has no leader, the requests it got). A watch opened on it is
    created, then ended (the member lost its leader after the open), or with
    `lost_after_open=False` refused at once, as a member that has no leader refuses it."""
    seen: list[tuple[str, str | None]] = []
    attributes = {"seen": seen, "lost_after_open": lost_after_open}
    handler = type("Handler", (_Leaderless,), attributes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_watch_cancelled_for_no_leader_resumes_on_another_member(
    etcd_server: EtcdServer, make_backend: BackendFactory, caplog: pytest.LogCaptureFixture
) -> None:
    plain = make_backend()
    first = plain.put("/n/a", b"1")
    second = plain.put("/n/b", b"2")
    with leaderless() as (endpoint, seen):
        backend = make_backend(endpoints=(endpoint, etcd_server.endpoint))
        watch = backend.watch("/n/", first)
        assert isinstance(watch, EtcdWatch)
        with reading(watch) as reader:
            reader.wait_events(2)
            third = plain.put("/n/c", b"3")
            events = reader.wait_events(3)
            assert reader.error is None
    assert [(e.key, e.mod_revision) for e in events] == [
        ("/n/a", first),
        ("/n/b", second),
        ("/n/c", third),
    ]
    assert seen == [("/v3/watch", "true")]  # the watch went there first, requiring a leader
    assert any(NO_LEADER in r.message and "on another member" in r.message for r in caplog.records)


def test_writes_refused_for_no_leader_go_to_another_member(
    etcd_server: EtcdServer, make_backend: BackendFactory
) -> None:
    plain = make_backend()
    with leaderless() as (endpoint, seen):

        def backend() -> EtcdBackend:  # each one tries the leaderless endpoint first
            return make_backend(endpoints=(endpoint, etcd_server.endpoint))

        created = backend().create("/w/k", b"v1")
        updated = backend().update("/w/k", b"v2", created)
        put = backend().put("/w/k", b"v3")  # a blind put too: "no leader" means not applied
        lease = backend().grant_lease(30)
        deleted = backend().delete("/w/k")
    assert (created, updated, put) == (created, created + 1, created + 2)
    assert deleted.value == b"v3" and plain.get("/w/k") is None
    assert lease > 0
    paths = ["/v3/kv/txn", "/v3/kv/txn", "/v3/kv/put", "/v3/lease/grant", "/v3/kv/txn"]
    assert [path for path, _ in seen] == paths
    assert {header for _, header in seen} == {"true"}


def test_calls_and_watches_wait_for_an_election_then_give_up(
    make_backend: BackendFactory,
) -> None:
    # Every member without a leader: each call goes round the members again for
    # request_timeout, then ends with NoLeader (a DatastoreUnavailable: a syncer re-lists
    # once a member is back; a write, even a blind put, was surely not applied).
    with (
        leaderless(lost_after_open=False) as (first, seen_first),
        leaderless(lost_after_open=False) as (second, seen_second),
    ):
        backend = make_backend(endpoints=(first, second), request_timeout=1.0)
        for call in (lambda: backend.get("/e/k"), lambda: backend.put("/e/k", b"v")):
            before = len(seen_first) + len(seen_second)
            t = time.monotonic()
            with pytest.raises(NoLeader, match="no member with a leader answered"):
                call()
            assert 1.0 <= time.monotonic() - t < 8.0
            assert len(seen_first) + len(seen_second) - before > 4  # asked again and again
        with reading(backend.watch("/e/", 1)) as reader:
            error = reader.wait_done(10)
    assert isinstance(error, NoLeader), error
