"""The ML2 driver's background threads: the leader's duties and the repair after a failure.

Every neutron-server process runs an `Elector` on the region's election key; the one leader

    elector thread --on_change--> leader thread: ensure_cluster_config, resync, then runs
                                   FelixStatusWatcher   (sink = the driver)
                                   ResyncRequestWatcher (handler = resync)
                                   Compactor            (if etcd_compaction_period_mins)

so only the leader resyncs and turns Felix status into Neutron agent state and port status.
A write that failed in any process starts a repair thread that asks the leader for a resync
until one is done after the failure.

No Neutron here: the resync, which reads the Neutron DB, is a callable the driver passes in
(it runs on the driver's DB thread and returns the report).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from calico.backoff import Backoff
from calico.datastore.etcd import EtcdBackend
from calico.openstack import keys
from calico.openstack.compaction import Compactor
from calico.openstack.election import Elector
from calico.openstack.feedback import FelixStatusWatcher, StatusSink
from calico.openstack.resync_request import ResyncRequestWatcher, request_resync
from calico.openstack.settings import CalicoOptions
from calico.openstack.store import OpenStackStore, ResyncReport

log = logging.getLogger(__name__)

ELECTION_TTL = 30
REPAIR_TIMEOUT = 60.0
REPAIR_MAX_BACKOFF = 60.0


class _Stoppable(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


@dataclass
class ProcessState:
    """Per-process connections and threads: a forked worker must not share them."""

    pid: int
    options: CalicoOptions
    backend: EtcdBackend
    store: OpenStackStore
    elector: Elector | None = None


class Leadership:
    """Takes up the leader's duties when elected and drops them when not (one thread)."""

    def __init__(
        self, state: ProcessState, sink: StatusSink, resync: Callable[[], ResyncReport]
    ) -> None:
        self._state = state
        self._sink = sink
        self._resync = resync
        self._cond = threading.Condition()
        self._want_lead = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Join the election; the lease is revoked at exit."""
        state = self._state
        server_id = f"{socket.gethostname()}:{state.pid}"
        key = keys.election_key(state.options.region_string)
        state.elector = Elector(
            state.backend, key, server_id, ttl=ELECTION_TTL, on_change=self._on_change
        )
        self._thread = threading.Thread(target=self._run, name="calico-leader", daemon=True)
        self._thread.start()
        state.elector.start()
        # neutron-server never tells mechanism drivers it is stopping; revoking the lease at
        # exit lets another server lead at once instead of after ELECTION_TTL.
        atexit.register(_release_leadership, state)

    def request_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_change(self, leader: bool) -> None:
        # Elector thread: hand over, never block it.
        with self._cond:
            self._want_lead = leader
            self._cond.notify_all()

    def _run(self) -> None:
        duties: list[_Stoppable] = []
        backoff = Backoff(1.0, 30.0)
        retry_in: float | None = None

        def changed() -> bool:
            return self._stopping or self._want_lead != bool(duties)

        while True:
            with self._cond:
                self._cond.wait_for(changed, timeout=retry_in)
                stopping, want = self._stopping, self._want_lead
            if stopping or (duties and not want):
                for duty in duties:
                    duty.stop()
                if duties:
                    log.info("no longer the Calico leader: stopped status feedback and resync")
                duties = []
                if stopping:
                    return
            elif want and not duties:
                try:
                    duties = self._take_office()
                    backoff.reset()
                    retry_in = None
                except Exception:
                    retry_in = backoff.delay()
                    log.exception("Calico leader start-up failed; retrying in %.0fs", retry_in)

    def _take_office(self) -> list[_Stoppable]:
        state = self._state
        log.info("Calico leader: writing cluster config and resyncing")
        state.store.ensure_cluster_config()
        if state.options.startup_resync == "always":
            self._resync()
        region_str = state.options.region_string
        status = FelixStatusWatcher(state.backend, region_str, self._sink)
        requests = ResyncRequestWatcher(state.backend, region_str, self._resync_for_request)
        duties: list[_Stoppable] = [status, requests]
        if state.options.etcd_compaction_period_mins:
            duties.append(
                Compactor(
                    state.backend,
                    state.options.etcd_compaction_period_mins,
                    state.options.etcd_compaction_min_revisions,
                )
            )
        for duty in duties:
            duty.start()
        return duties

    def _resync_for_request(self) -> Mapping[str, Any]:
        return self._resync().to_json()


def _release_leadership(state: ProcessState) -> None:
    if state.elector is not None and state.pid == os.getpid():
        state.elector.stop(timeout=2)


class Repair:
    """After a failed write, asks the leader for a resync (backing off while etcd or the
    leader is away) until one has run since the latest failure."""

    def __init__(self, state: Callable[[], ProcessState]) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._generation = 0
        self._stopping = False

    def request(self) -> None:
        with self._lock:
            self._generation += 1
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="calico-repair", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        # (A repair thread may be waiting for an answer; it is a daemon and gives up.)
        self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        backoff = Backoff(1.0, REPAIR_MAX_BACKOFF)
        while not self._stopping:
            with self._lock:
                generation = self._generation
            try:
                state = self._state()
                result = request_resync(state.backend, state.options.region_string, REPAIR_TIMEOUT)
            except Exception as exc:  # etcd still down, no leader yet, shutting down...
                if self._stopping:
                    return
                delay = backoff.delay()
                log.warning("Calico repair resync not done (%s); retrying in %.0fs", exc, delay)
                if self._wake.wait(delay):
                    return
                continue
            log.info("Calico repair: %s", result.get("summary", result))
            with self._lock:
                if self._generation == generation:
                    self._thread = None
                    return
            backoff.reset()  # failed again meanwhile: that write may postdate the resync
