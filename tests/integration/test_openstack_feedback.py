"""FelixStatusWatcher against a real etcd: heartbeats, lease expiry, endpoint status, re-lists."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from calico.datastore.api import Backend, DatastoreUnavailable, Watch
from calico.datastore.etcd import EtcdBackend
from calico.felix.status import StatusReporter
from calico.model.status_keys import host_prefix, status_prefix, workload_status_key
from calico.openstack.feedback import FelixStatusWatcher, parse_key
from calico.testing.etcd_server import EtcdServer
from calico.testing.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

BackendFactory = Callable[..., EtcdBackend]
REGION = "no-region"
PREFIX = status_prefix(REGION)
HEARTBEAT = {"time": "2026-01-01T00:00:00Z", "uptime": 1.0, "first_update": True}


def status_key(host: str) -> str:
    return host_prefix(host, REGION) + "status"


def ep_key(host: str, port: str, orchestrator: str = "openstack") -> str:
    return workload_status_key(host, orchestrator, f"openstack/vm-{port}", port, REGION)


def ep_value(status: str) -> bytes:
    return json.dumps({"status": status}).encode()


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()
        self.fail = False

    def _add(self, event: tuple[Any, ...]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        if self.fail:
            raise RuntimeError("sink broke")

    def felix_alive(self, host: str, status: Mapping[str, Any]) -> None:
        self._add(("alive", host, dict(status)))

    def felix_dead(self, host: str) -> None:
        self._add(("dead", host))

    def endpoint_status(self, host: str, port_id: str, status: str | None) -> None:
        self._add(("endpoint", host, port_id, status))

    def wait_for(self, event: tuple[Any, ...], timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: event in self.events, timeout):
                raise AssertionError(f"{event} not seen; got {self.events}")

    def take(self) -> list[tuple[Any, ...]]:
        with self._cond:
            events, self.events = self.events, []
            return events


class Pausable:
    """A Backend whose list/watch fail while paused (open watches are closed): a partition."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.paused = False
        self.refused = 0  # list/watch calls refused while paused
        self.watches: list[Watch] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def pause(self) -> None:
        self.paused = True
        for watch in self.watches:
            watch.close()

    def list(self, prefix: str) -> Any:
        if self.paused:
            self.refused += 1
            raise DatastoreUnavailable("paused")
        return self.inner.list(prefix)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        if self.paused:
            self.refused += 1
            raise DatastoreUnavailable("paused")
        watch = self.inner.watch(prefix, start_revision)
        self.watches.append(watch)
        return watch


@pytest.fixture
def watchers() -> Iterator[Callable[[Backend, Sink], FelixStatusWatcher]]:
    made: list[FelixStatusWatcher] = []

    def make(backend: Backend, sink: Sink) -> FelixStatusWatcher:
        watcher = FelixStatusWatcher(backend, REGION, sink)
        made.append(watcher)
        watcher.start()
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def test_key_parsing() -> None:
    assert parse_key(REGION, PREFIX + "h1/status") is not None
    assert parse_key(REGION, PREFIX + "h1/last_reported_status") is None
    assert parse_key(REGION, ep_key("h1", "p1", "k8s")) is None
    assert parse_key(REGION, PREFIX + "h1/endpoint/eth0") is None
    parsed = parse_key(REGION, ep_key("h1", "p1"))
    assert parsed is not None and (parsed.host, getattr(parsed, "port_id", None)) == ("h1", "p1")


def test_snapshot_then_live_events(
    backend: EtcdBackend, watchers: Callable[[Backend, Sink], FelixStatusWatcher]
) -> None:
    backend.put(status_key("h1"), json.dumps(HEARTBEAT).encode())
    backend.put(host_prefix("h1", REGION) + "last_reported_status", json.dumps(HEARTBEAT).encode())
    backend.put(ep_key("h1", "p1"), ep_value("up"))
    backend.put(ep_key("h1", "k1", "k8s"), ep_value("up"))
    backend.put(status_prefix("region-other") + "h9/status", b"{}")
    sink = Sink()
    watchers(backend, sink)
    sink.wait_for(("endpoint", "h1", "p1", "up"))
    sink.wait_for(("alive", "h1", HEARTBEAT))
    assert len(sink.take()) == 2

    beat = {**HEARTBEAT, "uptime": 5.0, "first_update": False}
    backend.put(status_key("h1"), json.dumps(beat).encode())
    sink.wait_for(("alive", "h1", beat))
    backend.put(ep_key("h1", "p1"), ep_value("down"))
    sink.wait_for(("endpoint", "h1", "p1", "down"))
    backend.put(ep_key("h1", "p1"), ep_value("down"))  # a live repeat is still reported
    backend.put(ep_key("h1", "p1"), b"{broken")  # skipped
    backend.put(ep_key("h2", "p2"), b'{"nostatus": 1}')  # skipped
    backend.put(status_key("h2"), b"[]")  # skipped
    backend.put(ep_key("h1", "k1", "k8s"), ep_value("down"))  # other orchestrator
    backend.delete(ep_key("h1", "p1"))
    sink.wait_for(("endpoint", "h1", "p1", None))
    backend.delete(status_key("h1"))
    sink.wait_for(("dead", "h1"))
    assert sink.take() == [
        ("alive", "h1", beat),
        ("endpoint", "h1", "p1", "down"),
        ("endpoint", "h1", "p1", "down"),
        ("endpoint", "h1", "p1", None),
        ("dead", "h1"),
    ]


def test_felix_lease_expiry_reports_dead(
    backend: EtcdBackend, watchers: Callable[[Backend, Sink], FelixStatusWatcher]
) -> None:
    sink = Sink()
    watchers(backend, sink)
    reporter = StatusReporter(backend, "h1", interval=10, ttl=1, region=REGION)
    assert reporter.report()  # one heartbeat with a 1 s lease, then Felix "dies"
    sink.wait_for(("alive", "h1", {**json.loads(backend.get(status_key("h1")).value)}))  # type: ignore[union-attr]
    started = time.monotonic()
    sink.wait_for(("dead", "h1"), timeout=5)
    assert time.monotonic() - started < 4


def test_relist_reconciles_what_was_missed(
    backend: EtcdBackend, watchers: Callable[[Backend, Sink], FelixStatusWatcher]
) -> None:
    backend.put(status_key("h1"), json.dumps(HEARTBEAT).encode())
    backend.put(status_key("h2"), json.dumps(HEARTBEAT).encode())
    backend.put(ep_key("h1", "p1"), ep_value("up"))
    backend.put(ep_key("h1", "p2"), ep_value("up"))
    backend.put(ep_key("h1", "p3"), ep_value("up"))
    backend.put(status_key("h4"), b"[]")  # never reported: its deletion is no news either
    backend.put(ep_key("h4", "p5"), b"{broken")
    pausable = Pausable(backend)
    sink = Sink()
    watcher = watchers(pausable, sink)
    sink.wait_for(("endpoint", "h1", "p3", "up"))
    sink.wait_for(("alive", "h2", HEARTBEAT))
    sink.take()

    pausable.pause()
    # Closing a watch from another thread is not instant: wait until the watcher has given
    # up on it and tried to re-list, so the changes below are really missed.
    wait_until(lambda: pausable.refused > 0, 5, "the watcher notices the partition", 0.01)
    backend.delete(status_key("h1"))
    backend.delete(ep_key("h1", "p1"))
    backend.put(ep_key("h1", "p2"), ep_value("error"))
    backend.put(ep_key("h3", "p4"), ep_value("up"))
    backend.delete(status_key("h4"))
    backend.delete(ep_key("h4", "p5"))
    # The watcher tried to re-list again after the changes, still partitioned: nothing new.
    refused = pausable.refused
    wait_until(lambda: pausable.refused > refused)
    assert sink.take() == []
    pausable.paused = False
    sink.wait_for(("dead", "h1"))
    sink.wait_for(("endpoint", "h1", "p1", None))
    sink.wait_for(("endpoint", "h1", "p2", "error"))
    sink.wait_for(("endpoint", "h3", "p4", "up"))
    wait_until(lambda: watcher.watching)  # the re-list is over: all it reports is in
    # Unchanged things (h2's heartbeat, p3's status) are not reported again.
    assert sorted(sink.take(), key=repr) == sorted(
        [
            ("dead", "h1"),
            ("endpoint", "h1", "p1", None),
            ("endpoint", "h1", "p2", "error"),
            ("endpoint", "h3", "p4", "up"),
        ],
        key=repr,
    )


def test_watch_resumes_after_etcd_restart(
    make_backend: BackendFactory,
    etcd_server: EtcdServer,
    watchers: Callable[[Backend, Sink], FelixStatusWatcher],
) -> None:
    backend = make_backend(connect_timeout=0.5, request_timeout=1.0)
    sink = Sink()
    watchers(backend, sink)
    backend.put(ep_key("h1", "p1"), ep_value("up"))
    sink.wait_for(("endpoint", "h1", "p1", "up"))
    etcd_server.restart()
    backend.put(ep_key("h1", "p1"), ep_value("down"))
    sink.wait_for(("endpoint", "h1", "p1", "down"))
    backend.delete(ep_key("h1", "p1"))
    sink.wait_for(("endpoint", "h1", "p1", None))


def test_sink_failures_are_not_fatal(
    backend: EtcdBackend, watchers: Callable[[Backend, Sink], FelixStatusWatcher]
) -> None:
    sink = Sink()
    sink.fail = True
    watcher = watchers(backend, sink)
    backend.put(ep_key("h1", "p1"), ep_value("up"))
    sink.wait_for(("endpoint", "h1", "p1", "up"))
    backend.put(ep_key("h1", "p1"), ep_value("down"))
    sink.wait_for(("endpoint", "h1", "p1", "down"))
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 2
