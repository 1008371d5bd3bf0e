"""Leader election among neutron-servers: whoever owns an etcd key with a live lease leads.

Protocol: create the key (value = our server ID) only if absent, attached to a fresh lease of
`ttl` seconds; the owner keeps the lease alive every ttl/3 and checks the key is still its
own. Everyone else watches the key and tries again as soon as it is deleted (the leader
stopped and revoked its lease, or the lease expired). A leader that cannot refresh its lease
for 2*ttl/3 steps down before etcd could expire the lease and let another server in, so two
servers never both believe they lead (barring clock stalls longer than ttl/3). `is_leader` also
turns false by itself once that deadline passes, even if the elector thread is stuck in a call.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from calico.backoff import Backoff
from calico.datastore.api import (
    Backend,
    DatastoreError,
    EventType,
    KeyExists,
    KeyNotFound,
)
from calico.datastore.watching import WatchThread

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0


class Elector(WatchThread):
    def __init__(
        self,
        backend: Backend,
        key: str,
        server_id: str,
        ttl: int = 30,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"election ttl must be at least 1 second, not {ttl}")
        super().__init__(f"elector-{key}", Backoff(0.2, MAX_BACKOFF))
        self._backend = backend
        self._key = key
        self._server_id = server_id
        self._ttl = ttl
        self._on_change = on_change
        self._interval = ttl / 3
        self._lease = 0
        self._leader = False
        self._valid_until = 0.0  # monotonic deadline of the current leadership

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._leader and time.monotonic() < self._valid_until

    def stop(self, timeout: float = 10.0) -> None:
        """Stop electing; a leader revokes its lease so another server takes over at once."""
        super().stop(timeout)

    # -- thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        super()._run()
        self._step_down()

    def _cycle(self) -> None:
        if self._try_acquire():
            self._lead()
        else:
            self._wait_for_vacancy()
        self._backoff.reset()

    def _retry_delay(self, exc: DatastoreError) -> float:
        delay = super()._retry_delay(exc)
        self._step_down()
        return delay

    def _try_acquire(self) -> bool:
        self._revoke()  # a lease left from a failed attempt may own the key: free it
        self._lease = self._backend.grant_lease(self._ttl)
        granted_at = time.monotonic()
        try:
            self._backend.create(self._key, self._server_id.encode(), lease=self._lease)
        except KeyExists:
            self._revoke()
            return False
        log.info("%s is now the leader (%s)", self._server_id, self._key)
        self._set_leader(True, granted_at)
        return True

    def _lead(self) -> None:
        """Keep the lease alive until we lose it, cannot refresh it in time, or stop."""
        while not self._stop.wait(self._interval):
            started = time.monotonic()
            try:
                self._backend.keepalive(self._lease)
                kv = self._backend.get(self._key)
            except KeyNotFound:
                log.warning("%s: election lease expired; stepping down", self._server_id)
                self._step_down()
                return
            except DatastoreError as exc:
                if not self.is_leader:
                    log.warning("%s: cannot refresh election lease (%s)", self._server_id, exc)
                    self._step_down()
                    return
                log.info("%s: election keepalive failed (%s); will retry", self._server_id, exc)
                continue
            if kv is None or kv.lease != self._lease or kv.value != self._server_id.encode():
                log.warning(
                    "%s: election key %s changed; stepping down", self._server_id, self._key
                )
                self._step_down()
                return
            with self._lock:
                self._valid_until = started + 2 * self._interval

    def _wait_for_vacancy(self) -> None:
        """Watch the key until it is deleted (or we stop)."""
        kv = self._backend.get(self._key)
        if kv is None:
            return  # vanished between our create and get: try again now
        log.debug(
            "%s: %s is led by %r", self._server_id, self._key, kv.value.decode(errors="replace")
        )
        with self._watching(self._backend.watch(self._key, kv.mod_revision + 1)) as batches:
            for events in batches:
                if any(e.type is EventType.DELETE and e.key == self._key for e in events):
                    return

    # -- state ------------------------------------------------------------------------------

    def _set_leader(self, leader: bool, since: float = 0.0) -> None:
        with self._lock:
            changed = leader != self._leader
            self._leader = leader
            self._valid_until = since + 2 * self._interval if leader else 0.0
        if changed and self._on_change is not None:
            try:
                self._on_change(leader)
            except Exception:
                log.exception("election on_change(%s) callback failed", leader)

    def _step_down(self) -> None:
        was_leader = self._leader
        self._revoke()
        if was_leader:
            log.info("%s is no longer the leader (%s)", self._server_id, self._key)
        self._set_leader(False)

    def _revoke(self) -> None:
        lease, self._lease = self._lease, 0
        if lease:
            with contextlib.suppress(DatastoreError):
                self._backend.revoke_lease(lease)
