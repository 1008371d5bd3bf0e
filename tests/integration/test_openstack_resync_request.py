"""Resync requests through a real etcd: round trip, errors, waiting requests, timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from calico.datastore.api import Backend
from calico.datastore.etcd import EtcdBackend
from calico.openstack import keys
from calico.openstack.resync_request import ResyncRequestWatcher, request_resync
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

REGION = "region-r1"
WatcherFactory = Callable[[Backend, Callable[[], Mapping[str, Any]]], ResyncRequestWatcher]


@pytest.fixture
def watchers() -> Iterator[WatcherFactory]:
    made: list[ResyncRequestWatcher] = []

    def make(backend: Backend, handler: Callable[[], Mapping[str, Any]]) -> ResyncRequestWatcher:
        watcher = ResyncRequestWatcher(backend, REGION, handler, result_ttl=60)
        made.append(watcher)
        watcher.start()
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


class Handler:
    def __init__(self, result: Mapping[str, Any] | Exception) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    waiting.wait_until(predicate, timeout, interval=0.02)


def test_round_trip(backend: EtcdBackend, watchers: WatcherFactory) -> None:
    handler = Handler({"summary": "resync: no changes", "changes": 0})
    watchers(backend, handler)
    result = request_resync(backend, REGION, timeout=5)
    assert result == {"summary": "resync: no changes", "changes": 0}
    assert handler.calls == 1
    results = backend.list(keys.openstack_prefix(REGION) + "resync/result/").items
    assert len(results) == 1 and results[0].lease != 0  # expires by itself
    # The request went away with the requester's lease.
    assert backend.get(keys.resync_request_key(REGION)) is None

    assert request_resync(backend, REGION, timeout=5)["changes"] == 0
    assert handler.calls == 2


def test_handler_failure_becomes_error_result(
    backend: EtcdBackend, watchers: WatcherFactory
) -> None:
    watchers(backend, Handler(RuntimeError("neutron DB unreachable")))
    result = request_resync(backend, REGION, timeout=5)
    assert result == {"error": "RuntimeError: neutron DB unreachable"}


def test_timeout_without_a_leader(backend: EtcdBackend) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no neutron-server running the calico driver"):
        request_resync(backend, REGION, timeout=0.5)
    assert time.monotonic() - started < 2


def test_other_region_does_not_answer(backend: EtcdBackend, watchers: WatcherFactory) -> None:
    watchers(backend, Handler({"ok": True}))
    with pytest.raises(TimeoutError):
        request_resync(backend, "no-region", timeout=0.5)


def test_request_waiting_before_the_leader_starts(
    backend: EtcdBackend, watchers: WatcherFactory
) -> None:
    outcome: dict[str, Any] = {}

    def ask() -> None:
        outcome["result"] = request_resync(backend, REGION, timeout=5)

    asker = threading.Thread(target=ask)
    asker.start()
    wait_until(lambda: backend.get(keys.resync_request_key(REGION)) is not None)
    handler = Handler({"ok": True})
    watchers(backend, handler)
    asker.join(5)
    assert outcome == {"result": {"ok": True}}
    assert handler.calls == 1


def test_answered_request_is_not_rerun(backend: EtcdBackend, watchers: WatcherFactory) -> None:
    backend.put(keys.resync_request_key(REGION), json.dumps({"id": "abc", "time": "t"}).encode())
    backend.put(keys.resync_result_key(REGION, "abc"), b'{"ok": true}')
    handler = Handler({"ok": True})
    watcher = watchers(backend, handler)
    wait_until(lambda: watcher.watching)  # the existing request was listed and judged
    assert handler.calls == 0


def test_malformed_requests_are_ignored(backend: EtcdBackend, watchers: WatcherFactory) -> None:
    handler = Handler({"ok": True})
    watchers(backend, handler)
    for bad in (b"{nope", b'["id"]', b'{"id": 7}', b'{"id": "../x"}'):
        backend.put(keys.resync_request_key(REGION), bad)
    # Events arrive in order: once this request is answered, the bad ones were seen.
    assert request_resync(backend, REGION, timeout=5) == {"ok": True}
    assert handler.calls == 1  # only the good request ran


def test_stop_is_prompt(backend: EtcdBackend, watchers: WatcherFactory) -> None:
    watcher = watchers(backend, Handler({}))
    wait_until(lambda: watcher.watching)  # stop() must close the open watch
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 1


def test_watcher_survives_etcd_restart(
    make_backend: Callable[..., EtcdBackend], etcd_server: EtcdServer, watchers: WatcherFactory
) -> None:
    handler = Handler({"ok": True})
    watcher = watchers(make_backend(connect_timeout=0.5, request_timeout=1.0), handler)
    wait_until(lambda: watcher.watching)  # the restart breaks an open watch
    etcd_server.restart()
    assert request_resync(make_backend(), REGION, timeout=5) == {"ok": True}
