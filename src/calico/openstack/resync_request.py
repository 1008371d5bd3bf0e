"""On-demand resync through etcd, so `calico-neutron-resync` needs no Neutron DB access.

The CLI writes a request {id, time} at `keys.resync_request_key(region)` under a lease as
long as it is willing to wait (a request nobody answered in time vanishes with it), then
watches `keys.resync_result_key(region, id)`. The leading neutron-server runs a
`ResyncRequestWatcher`: for each new request it runs the resync (handler) and writes the
result JSON there, under a lease of `result_ttl` seconds so results do not pile up.
Requests that arrive in one watch batch are answered by a single resync. A request
whose result already exists is not run again, so a re-list (after an etcd restart, or a new
leader starting) never repeats an answered request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from calico.backoff import Backoff
from calico.datastore.api import (
    Backend,
    DatastoreError,
    EventType,
    KeyValue,
    SyncStatus,
    Update,
    WatchEvent,
)
from calico.datastore.syncer import Syncer
from calico.datastore.watching import WatchThread
from calico.openstack import keys

log = logging.getLogger(__name__)

RESULT_TTL = 600
MIN_BACKOFF = 0.2
MAX_BACKOFF = 5.0


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the requesting side (CLI) -----------------------------------------------------------------


def request_resync(backend: Backend, region_str: str, timeout: float) -> dict[str, Any]:
    """Ask the leading neutron-server for a resync and return its result JSON.

    Raises TimeoutError when no answer comes within timeout seconds; DatastoreError when
    etcd cannot take the request at all.
    """
    deadline = time.monotonic() + timeout
    request_id = uuid.uuid4().hex
    request_key = keys.resync_request_key(region_str)
    result_key = keys.resync_result_key(region_str, request_id)
    lease = backend.grant_lease(max(1, math.ceil(timeout)))
    body = json.dumps({"id": request_id, "time": _utc_now()}).encode()
    backend.put(request_key, body, lease=lease)
    log.info("resync request %s written; waiting up to %.0fs for the result", request_id, timeout)
    try:
        result = _wait_for_value(backend, result_key, deadline)
    finally:
        # The request has served its purpose (answered or given up): drop it and its lease.
        with contextlib.suppress(DatastoreError):
            backend.revoke_lease(lease)
    if result is None:
        raise TimeoutError(
            f"no neutron-server running the calico driver answered the resync request"
            f" within {timeout:g}s (region {region_str}, request {request_id})"
        )
    data = json.loads(result)
    if not isinstance(data, dict):
        raise ValueError(f"resync result at {result_key} is not a JSON object")
    return data


def _wait_for_value(backend: Backend, key: str, deadline: float) -> bytes | None:
    """The first value at key (already there or put later), or None at the deadline."""
    waiter = _ValueWaiter(key)
    syncer = Syncer(
        backend,
        [key],
        waiter,
        name="resync-result",
        initial_backoff=MIN_BACKOFF,
        max_backoff=MAX_BACKOFF,
    )
    syncer.start()
    try:
        waiter.arrived.wait(max(0.0, deadline - time.monotonic()))
    finally:
        syncer.stop()
    return waiter.value


class _ValueWaiter:
    """Syncer consumer keeping the first value put at one key."""

    def __init__(self, key: str) -> None:
        self._key = key
        self.value: bytes | None = None
        self.arrived = threading.Event()

    def on_status(self, status: SyncStatus) -> None:
        pass

    def on_updates(self, updates: Sequence[Update]) -> None:
        for update in updates:
            if update.key == self._key and update.value is not None and not self.arrived.is_set():
                self.value = update.value
                self.arrived.set()


# -- the answering side (leader) ---------------------------------------------------------------


class ResyncRequestWatcher(WatchThread):
    def __init__(
        self,
        backend: Backend,
        region_str: str,
        handler: Callable[[], Mapping[str, Any]],
        result_ttl: int = RESULT_TTL,
    ) -> None:
        super().__init__("resync-requests", Backoff(MIN_BACKOFF, MAX_BACKOFF))
        self._backend = backend
        self._region_str = region_str
        self._request_key = keys.resync_request_key(region_str)
        self._handler = handler
        self._result_ttl = result_ttl

    def _cycle(self) -> None:
        listing = self._backend.list(self._request_key)
        self._answer([kv for kv in listing.items if kv.key == self._request_key])
        self._backoff.reset()
        self._watch_from(listing.revision + 1)

    def _watch_from(self, revision: int) -> None:
        with self._watching(self._backend.watch(self._request_key, revision)) as batches:
            for events in batches:
                self._answer(_puts(events, self._request_key))

    def _answer(self, requests: Sequence[KeyValue | WatchEvent]) -> None:
        pending: list[str] = []
        for request in requests:
            request_id = self._request_id(request.key, request.value or b"")
            if request_id and request_id not in pending and not self._answered(request_id):
                pending.append(request_id)
        if not pending or self._stop.is_set():
            return
        log.info("running resync for request(s) %s", ", ".join(pending))
        try:
            result = dict(self._handler())
            body = json.dumps(result).encode()
        except Exception as exc:
            log.exception("resync for request(s) %s failed", ", ".join(pending))
            body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        lease = self._backend.grant_lease(self._result_ttl)
        for request_id in pending:
            self._backend.put(keys.resync_result_key(self._region_str, request_id), body, lease)

    def _request_id(self, key: str, value: bytes) -> str | None:
        try:
            data = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        request_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id or "/" in request_id:
            log.warning("ignoring malformed resync request at %s: %r", key, value[:200])
            return None
        return request_id

    def _answered(self, request_id: str) -> bool:
        return self._backend.get(keys.resync_result_key(self._region_str, request_id)) is not None


def _puts(events: Sequence[WatchEvent], key: str) -> list[WatchEvent]:
    return [e for e in events if e.type is EventType.PUT and e.key == key]
