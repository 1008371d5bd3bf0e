"""Felix status feedback for the Neutron driver: agent liveness and port status.

Watches `/calico/felix/v2/<region>/host/` (calico.model.status_keys):
  <host>/status                                  heartbeat JSON {time, uptime, first_update}
                                                 under a lease: deleted when Felix stops
  <host>/workload/openstack/<wl>/endpoint/<port> {"status": "up"|"down"|"error"}
Everything else (`last_reported_status`, host endpoints, other orchestrators) is ignored.

A Syncer lists the prefix, hands over what it finds, then watches from the listing's
revision. When the watch breaks (etcd restart, compaction) it re-lists with backoff and
hands over only the keys that changed meanwhile, so a re-list does not repeat a heartbeat
already reported: hosts whose status key vanished meanwhile are dead, endpoint keys that
vanished get status None.
Sink calls come from the watcher thread; a sink exception is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from calico.datastore.api import Backend, SyncStatus, Update
from calico.datastore.syncer import Syncer
from calico.model.status_keys import (
    HeartbeatKey,
    WorkloadStatusKey,
    parse_status_key,
    status_prefix,
)
from calico.openstack import keys

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


class FelixStatusWatcher:
    """A Syncer consumer: the Syncer lists, watches, re-lists and hands over the differences."""

    def __init__(self, backend: Backend, region_str: str, sink: StatusSink) -> None:
        self._region_str = region_str
        self._sink = sink
        # What the sink has been told: hosts alive, endpoint -> status.
        self._alive: set[str] = set()
        self._endpoints: dict[_EndpointKey, str] = {}
        self._relisting = True  # updates come from a (re-)list, not the watch
        self._syncer = Syncer(
            backend,
            [status_prefix(region_str)],
            self,
            name="felix-status-watch",
            initial_backoff=MIN_BACKOFF,
            max_backoff=MAX_BACKOFF,
        )

    def start(self) -> None:
        self._syncer.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._syncer.stop(timeout)

    @property
    def watching(self) -> bool:
        """Blocked in a watch: everything the last (re-)list found has been reported."""
        return self._syncer.watching

    # -- Syncer callbacks -------------------------------------------------------------------

    def on_status(self, status: SyncStatus) -> None:
        self._relisting = status is not SyncStatus.IN_SYNC

    def on_updates(self, updates: Sequence[Update]) -> None:
        for update in updates:
            what = parse_key(self._region_str, update.key)
            if isinstance(what, HeartbeatKey):
                if update.value is not None:
                    self._on_status_put(what.host, update.key, update.value)
                elif what.host in self._alive or not self._relisting:
                    self._on_status_delete(what.host)
            elif isinstance(what, _EndpointKey):
                if update.value is not None:
                    self._on_endpoint_put(what, update.key, update.value, relist=self._relisting)
                elif what in self._endpoints or not self._relisting:
                    self._on_endpoint_delete(what)

    # -- reports ----------------------------------------------------------------------------

    def _on_status_put(self, host: str, key: str, value: bytes) -> None:
        status = _load(key, value)
        if not isinstance(status, dict):
            return
        self._alive.add(host)
        self._call("felix_alive", host, status)

    def _on_status_delete(self, host: str) -> None:
        self._alive.discard(host)
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
