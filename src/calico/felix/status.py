"""Status Felix writes back to the datastore: its liveness heartbeat, endpoint status and
the settings it renders rules with.

The keys (built and parsed in calico.model.status_keys) are Calico's: a heartbeat
`<host>/status` under a lease plus `last_reported_status`, and one key per endpoint. The
heartbeat's lease expires ReportingTTLSecs after Felix stops reporting, which is how the
OpenStack driver notices a dead host. Endpoint status keys of this host that no current
endpoint owns (left by an earlier run) are swept once the dataplane has reported every
endpoint (`endpoints_resynced`). For `calicoctl policy trace`, which renders rules as this
Felix does: the rules settings (every layer merged: environment, config file, datastore),
once per start, and the interface each host endpoint resolved to (by name, or by an
expected IP found on an interface), whenever that changes. Datastore failures are
logged and retried on the next tick; they never stop Felix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from calico.datastore.api import Backend, DatastoreError, KeyNotFound
from calico.model.status_keys import (
    NO_REGION,
    host_endpoint_interfaces_key,
    host_prefix,
    rules_settings_key,
)

log = logging.getLogger(__name__)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusReporter:
    """Heartbeat and endpoint status writer (its own thread once started)."""

    def __init__(
        self,
        backend: Backend,
        hostname: str,
        interval: float,
        ttl: float,
        region: str = NO_REGION,
        wallclock: Callable[[], str] = _utc_now,
        endpoint_delay: float = 1.0,
    ) -> None:
        self._backend = backend
        self._prefix = host_prefix(hostname, region)
        self._settings_key = rules_settings_key(hostname, region)
        self._heps_key = host_endpoint_interfaces_key(hostname, region)
        self._documents: dict[str, bytes] = {}  # key -> queued value (rules settings, ...)
        self._interval = interval  # heartbeat; 0 (or less) writes none, as Calico's Felix
        self._endpoint_delay = max(endpoint_delay, 0.1)  # endpoint status goes out this often
        self._ttl = max(1, round(ttl))
        self._wallclock = wallclock
        self._started = time.monotonic()
        self._first = True
        self._lease = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="felix-status", daemon=True)
        self._lock = threading.Lock()
        self._pending: dict[str, str | None] = {}  # key -> status, None = delete
        self._written: dict[str, str] = {}
        self._sweep = False  # sweep stale endpoint keys after the next flush

    # -- heartbeat --------------------------------------------------------------------------

    def report(self) -> bool:
        """Write one heartbeat (and pending endpoint status); True if the datastore took it."""
        body = json.dumps(
            {
                "time": self._wallclock(),
                "uptime": round(time.monotonic() - self._started, 1),
                "first_update": self._first,
            }
        ).encode()
        try:
            self._refresh_lease()
            self._backend.put(self._prefix + "status", body, lease=self._lease)
            self._backend.put(self._prefix + "last_reported_status", body)
            self.flush_endpoints()
        except DatastoreError as exc:
            log.warning("status report failed (will retry): %s", exc)
            return False
        self._first = False
        return True

    def _refresh_lease(self) -> None:
        if self._lease:
            try:
                self._backend.keepalive(self._lease)
                return
            except KeyNotFound:
                log.info("status lease expired; granting a new one")
        self._lease = self._backend.grant_lease(self._ttl)

    # -- endpoint status --------------------------------------------------------------------

    def set_endpoint_status(self, key: str, status: str | None) -> None:
        """Queue an endpoint status ("up", "down", "error") or its removal (None)."""
        with self._lock:
            self._pending[key] = status

    def endpoints_resynced(self) -> None:
        """Every current endpoint's status has been queued (the dataplane's first in-sync
        apply): the next flush also deletes this host's endpoint keys nobody owns, e.g. of
        endpoints deleted while Felix was down."""
        with self._lock:
            self._sweep = True

    def set_rules_settings(self, settings: Mapping[str, object]) -> None:
        """Queue the settings this Felix renders rules with (RulesConfig.to_json)."""
        self._queue_document(self._settings_key, settings)

    def set_host_endpoint_interfaces(self, resolved: Mapping[str, str]) -> None:
        """Queue which interface each of this host's host endpoints resolved to."""
        self._queue_document(self._heps_key, resolved)

    def _queue_document(self, key: str, value: Mapping[str, object]) -> None:
        with self._lock:
            self._documents[key] = json.dumps(value, sort_keys=True).encode()

    def flush_endpoints(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            sweep = self._sweep
            documents, self._documents = self._documents, {}
        try:
            for key, value in list(documents.items()):
                self._backend.put(key, value)
                del documents[key]
        except DatastoreError:
            with self._lock:  # put back what was not written, unless superseded meanwhile
                self._documents = {**documents, **self._documents}
                self._pending = {**pending, **self._pending}
            raise
        try:
            for key, status in pending.items():
                if status is None:
                    if self._written.pop(key, None) is not None:
                        self._delete(key)
                elif self._written.get(key) != status:
                    self._backend.put(key, json.dumps({"status": status}).encode())
                    self._written[key] = status
        except DatastoreError:
            with self._lock:  # put back what was not written, unless superseded meanwhile
                self._pending = {**pending, **self._pending}
            raise
        if sweep:
            with self._lock:
                queued = {k for k, v in self._pending.items() if v is not None}
            self.remove_stale_endpoint_status(set(self._written) | queued)
            with self._lock:
                self._sweep = False

    def remove_stale_endpoint_status(self, wanted: set[str]) -> None:
        """Delete endpoint status keys for this host that no current endpoint owns."""
        listing = self._backend.list(self._prefix)
        for kv in listing.items:
            is_endpoint = "/endpoint/" in kv.key[len(self._prefix) :]
            if is_endpoint and kv.key not in wanted:
                self._delete(kv.key)
                self._written.pop(kv.key, None)

    def _delete(self, key: str) -> None:
        with contextlib.suppress(KeyNotFound):
            self._backend.delete(key)

    # -- thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        """Heartbeats every `interval` (retried within 5 s after a failure); queued endpoint
        status every `endpoint_delay` in between."""
        next_beat = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if self._interval > 0 and now >= next_beat:
                ok = self.report()
                next_beat = now + (self._interval if ok else min(self._interval, 5.0))
            else:
                try:
                    self.flush_endpoints()
                except DatastoreError as exc:
                    log.warning("endpoint status report failed (will retry): %s", exc)
            wait = self._endpoint_delay
            if self._interval > 0:
                wait = min(wait, max(next_beat - time.monotonic(), 0.0))
            self._stop.wait(wait)
