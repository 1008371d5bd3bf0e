"""Felix status feedback for the Neutron driver: agent liveness and port status.

Watches `/calico/felix/v2/<region>/host/` (see calico.felix.status for what Felix writes):
  <host>/status                                  heartbeat JSON {time, uptime, first_update}
                                                 under a lease: deleted when Felix stops
  <host>/workload/openstack/<wl>/endpoint/<port> {"status": "up"|"down"|"error"}
Everything else (`last_reported_status`, host endpoints, other orchestrators) is ignored.

The watcher lists the prefix, reports what it finds, then watches from the listing's
revision. When the watch breaks (etcd restart, compaction) it re-lists with backoff and
reports only the differences against what it had reported: hosts whose status key vanished
meanwhile are dead, endpoint keys that vanished get status None. Heartbeats are deduplicated
by mod_revision, so a re-list does not repeat a heartbeat already reported.
Sink calls come from the watcher thread; a sink exception is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from calico.backoff import Backoff
from calico.datastore.api import Backend, DatastoreError, EventType, WatchEvent
from calico.model.status_keys import (
    HeartbeatKey,
    WorkloadStatusKey,
    parse_status_key,
    status_prefix,
)
from calico.openstack import keys
from calico.openstack.watching import WatchThread

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.2
MAX_BACKOFF = 10.0


class StatusSink(Protocol):
    def felix_alive(self, host: str, status: Mapping[str, Any]) -> None: ...

    def felix_dead(self, host: str) -> None: ...

    def endpoint_status(self, host: str, port_id: str, status: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class _EndpointKey:
    host: str
    port_id: str


def parse_key(region_str: str, key: str) -> HeartbeatKey | _EndpointKey | None:
    """A heartbeat, a Neutron port's status, or None for a key the driver ignores."""
    what = parse_status_key(region_str, key)
    if isinstance(what, WorkloadStatusKey):
        if what.orchestrator != keys.ORCHESTRATOR:
            return None
        return _EndpointKey(what.host, what.endpoint)
    return what


class FelixStatusWatcher(WatchThread):
    def __init__(self, backend: Backend, region_str: str, sink: StatusSink) -> None:
        super().__init__("felix-status-watch")
        self._backend = backend
        self._region_str = region_str
        self._prefix = status_prefix(region_str)
        self._sink = sink
        # What the sink has been told: host -> heartbeat mod_revision, endpoint -> status.
        self._alive: dict[str, int] = {}
        self._endpoints: dict[_EndpointKey, str] = {}

    # -- thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(MIN_BACKOFF, MAX_BACKOFF)
        while not self._stop.is_set():
            try:
                revision = self._resync()
                backoff.reset()
                self._watch_from(revision + 1)
            except DatastoreError as exc:
                delay = backoff.delay()
                log.warning(
                    "Felix status watch on %s: %s; re-listing in %.1fs", self._prefix, exc, delay
                )
                self._stop.wait(delay)

    def _resync(self) -> int:
        listing = self._backend.list(self._prefix)
        seen_hosts: set[str] = set()
        seen_endpoints: set[_EndpointKey] = set()
        for kv in listing.items:
            what = parse_key(self._region_str, kv.key)
            if isinstance(what, HeartbeatKey):
                seen_hosts.add(what.host)
                self._on_status_put(what.host, kv.key, kv.value, kv.mod_revision)
            elif isinstance(what, _EndpointKey):
                seen_endpoints.add(what)
                self._on_endpoint_put(what, kv.key, kv.value, relist=True)
        for host in [h for h in self._alive if h not in seen_hosts]:
            self._on_status_delete(host)
        for endpoint in [e for e in self._endpoints if e not in seen_endpoints]:
            self._on_endpoint_delete(endpoint)
        return listing.revision

    def _watch_from(self, revision: int) -> None:
        with self._watching(self._backend.watch(self._prefix, revision)) as batches:
            for events in batches:
                self._handle(events)

    def _handle(self, events: Sequence[WatchEvent]) -> None:
        for event in events:
            what = parse_key(self._region_str, event.key)
            put = event.type is EventType.PUT and event.value is not None
            if isinstance(what, HeartbeatKey):
                if put:
                    assert event.value is not None
                    self._on_status_put(what.host, event.key, event.value, event.mod_revision)
                else:
                    self._on_status_delete(what.host)
            elif isinstance(what, _EndpointKey):
                if put:
                    assert event.value is not None
                    self._on_endpoint_put(what, event.key, event.value, relist=False)
                else:
                    self._on_endpoint_delete(what)

    # -- reports ----------------------------------------------------------------------------

    def _on_status_put(self, host: str, key: str, value: bytes, mod_revision: int) -> None:
        if self._alive.get(host) == mod_revision:
            return
        status = _load(key, value)
        if not isinstance(status, dict):
            return
        self._alive[host] = mod_revision
        self._call("felix_alive", host, status)

    def _on_status_delete(self, host: str) -> None:
        self._alive.pop(host, None)
        log.warning("Felix on host %s stopped reporting (status key gone)", host)
        self._call("felix_dead", host)

    def _on_endpoint_put(
        self, endpoint: _EndpointKey, key: str, value: bytes, *, relist: bool
    ) -> None:
        data = _load(key, value)
        status = data.get("status") if isinstance(data, dict) else None
        if not isinstance(status, str):
            if isinstance(data, dict):
                log.warning("endpoint status at %s has no status string: %r", key, value[:200])
            return
        # A re-list repeats what we already reported; a live put is always news (e.g. a
        # restarted Felix re-asserting "up" after the driver marked the port in error).
        if relist and self._endpoints.get(endpoint) == status:
            return
        self._endpoints[endpoint] = status
        self._call("endpoint_status", endpoint.host, endpoint.port_id, status)

    def _on_endpoint_delete(self, endpoint: _EndpointKey) -> None:
        self._endpoints.pop(endpoint, None)
        self._call("endpoint_status", endpoint.host, endpoint.port_id, None)

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self._sink, method)(*args)
        except Exception:
            log.exception("status sink %s%r failed", method, args)


def _load(key: str, value: bytes) -> Any:
    """JSON object in value, or None (logged) when it is not one."""
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        log.warning("skipping malformed Felix status at %s: %r", key, value[:200])
        return None
    return data
