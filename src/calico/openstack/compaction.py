"""Periodic etcd compaction by the leading neutron-server, as networking-calico requests it.

Without compaction etcd keeps every revision of every key and grows without bound, so the
leader considers a compaction every `etcd_compaction_period_mins` (0: never), keeping at
least `etcd_compaction_min_revisions` revisions and the whole history of the previous period.
State lives in etcd under networking-calico's keys, so a new leader carries on where the last
one stopped: `/calico/compaction/v1/trigger` (under a lease of one period: while it exists the
period has not passed) and `/calico/compaction/v1/last` (the last compaction revision; its
mod_revision is the store revision at the last check).
"""

from __future__ import annotations

import logging
import os
import threading

from calico.datastore.api import Backend, DatastoreError

log = logging.getLogger(__name__)

PREFIX = "/calico/compaction/v1/"
TRIGGER_KEY = PREFIX + "trigger"
LAST_KEY = PREFIX + "last"
CHECK_INTERVAL = 60.0  # seconds between looks at the trigger key


def compaction_revision(
    current: int, last_compaction: int, last_check: int, min_revisions: int
) -> int | None:
    """Where to compact now, or None: keep `min_revisions` and everything since the last
    check, and never go back to or before the last compaction."""
    if current <= min_revisions:
        return None
    keep = max(min_revisions, current - last_check)
    revision = current - keep
    return revision if revision > last_compaction else None


def check_once(backend: Backend, period_mins: int, min_revisions: int) -> str:
    """One look: compact if a period has passed and there is history to drop. Returns what
    was done, for the log."""
    trigger = backend.get(TRIGGER_KEY)
    if trigger is not None and trigger.lease:
        return "waiting for the period to pass"
    last = backend.get(LAST_KEY)
    if trigger is not None or last is None:  # lost its lease, or the first check ever
        _write_keys(backend, 0, period_mins)
        return "first check: recorded the current revision"
    current = backend.list(PREFIX).revision
    try:
        last_compaction = int(last.value)
    except ValueError:
        last_compaction = current + 1  # unreadable: start again, as for a bogus revision
    if last_compaction > current:  # e.g. restored from a backup
        _write_keys(backend, 0, period_mins)
        return f"bogus last compaction revision {last.value!r}: starting again"
    revision = compaction_revision(current, last_compaction, last.mod_revision, min_revisions)
    if revision is None:
        _write_keys(backend, last_compaction, period_mins)
        return f"nothing to compact at revision {current}"
    log.info("requesting etcd compaction at revision %d (current %d)", revision, current)
    backend.compact(revision)
    _write_keys(backend, revision, period_mins)
    return f"compacted etcd at revision {revision} (current {current})"


def _write_keys(backend: Backend, compaction: int, period_mins: int) -> None:
    backend.put(LAST_KEY, str(compaction).encode())
    lease = backend.grant_lease(period_mins * 60)
    backend.put(TRIGGER_KEY, str(os.getpid()).encode(), lease=lease)


class Compactor:
    """The leader's compaction duty: a thread checking every CHECK_INTERVAL seconds."""

    def __init__(
        self,
        backend: Backend,
        period_mins: int,
        min_revisions: int,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self._backend = backend
        self._period, self._min_revisions = period_mins, min_revisions
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-compaction", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = check_once(self._backend, self._period, self._min_revisions)
                log.debug("etcd compaction: %s", done)
            except DatastoreError as exc:  # tried again at the next interval
                log.warning("etcd compaction check failed: %s", exc)
            self._stop.wait(self._interval)
