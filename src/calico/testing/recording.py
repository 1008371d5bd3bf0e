"""Test doubles shipped with calico-py: a syncer consumer that checks the syncer contract, a
scope that runs a Syncer, and a reader that drains a datastore watch in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from calico.datastore.api import Backend, SyncStatus, Update, UpdateKind, Watch, WatchEvent
from calico.datastore.syncer import Syncer


class RecordingCallbacks:
    """A `SyncerCallbacks` for tests: mirrors updates into `state` and checks the contract.

    Contract checked on every update: NEW only for keys it does not hold, UPDATED/DELETED only
    for keys it holds, values only on NEW/UPDATED. A violation is recorded in `violations` and
    raised (AssertionError), and `wait_for` re-raises it so a test fails at once, not by timeout.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.state: dict[str, bytes] = {}
        self.status: SyncStatus | None = None
        self.statuses: list[SyncStatus] = []
        self.updates: list[Update] = []
        self.violations: list[str] = []

    def on_status(self, status: SyncStatus) -> None:
        with self._cond:
            self.status = status
            self.statuses.append(status)
            self._cond.notify_all()

    def on_updates(self, updates: Sequence[Update]) -> None:
        with self._cond:
            for update in updates:
                self._apply_locked(update)
            self._cond.notify_all()

    def clear_history(self) -> None:
        """Forget recorded statuses and updates (not state/status), to observe what comes next."""
        with self._cond:
            self.statuses.clear()
            self.updates.clear()

    def kinds(self) -> dict[str, UpdateKind]:
        """Key -> kind of each recorded update; fails if a key was updated twice (a resync
        must hand over each difference once)."""
        with self._cond:
            kinds = {u.key: u.kind for u in self.updates}
            assert len(kinds) == len(self.updates), f"duplicate updates: {self.updates}"
            return kinds

    def in_sync_with(self, backend: Backend, prefixes: Sequence[str]) -> Callable[[], bool]:
        """A `wait_for` predicate: in sync, and `state` is what `backend` holds under
        `prefixes`."""

        def check() -> bool:
            if self.status is not SyncStatus.IN_SYNC:
                return False
            items = (kv for prefix in prefixes for kv in backend.list(prefix).items)
            return self.state == {kv.key: kv.value for kv in items}

        return check

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until predicate() holds (checked under the lock after each callback)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate() or bool(self.violations), timeout):
                raise AssertionError(
                    f"timed out after {timeout}s; status {self.status}, state {self.state}"
                )
            if self.violations:
                raise AssertionError(f"syncer contract violated: {self.violations}")

    def _apply_locked(self, update: Update) -> None:
        self.updates.append(update)
        held = update.key in self.state
        problem = None
        if update.kind is UpdateKind.NEW and held:
            problem = "NEW for a key the consumer already has"
        elif update.kind is not UpdateKind.NEW and not held:
            problem = f"{update.kind.name} for a key the consumer does not have"
        elif (update.value is None) != (update.kind is UpdateKind.DELETED):
            problem = "value must be None exactly for DELETED"
        if problem is not None:
            self.violations.append(f"{problem}: {update}")
            self._cond.notify_all()
            raise AssertionError(self.violations[-1])
        if update.value is None:
            del self.state[update.key]
        else:
            self.state[update.key] = update.value


class WatchReader:
    """Iterates a `Backend.watch` in a thread, collecting events and the exception that ended
    it; `wait_events` and `wait_done` fail (AssertionError) after their timeout."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self.watch:
                with self._cond:
                    self.events.extend(batch)
                    self._cond.notify_all()
        except BaseException as exc:
            self.error = exc
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_events(self, count: int, timeout: float = 10.0) -> list[WatchEvent]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.events) >= count or self._done, timeout)
            assert len(self.events) >= count, f"watch ended early: {self.error!r}"
            return list(self.events)

    def wait_done(self, timeout: float = 10.0) -> BaseException | None:
        with self._cond:
            assert self._cond.wait_for(lambda: self._done, timeout), "watch still running"
        return self.error

    def close(self) -> None:
        self.watch.close()
        self._thread.join(10)


@contextmanager
def reading(watch: Watch) -> Iterator[WatchReader]:
    """A WatchReader on `watch`, closed (watch and thread) on exit."""
    reader = WatchReader(watch)
    try:
        yield reader
    finally:
        reader.close()


@contextmanager
def running(syncer: Syncer) -> Iterator[Syncer]:
    """Start `syncer`; on exit stop it and check that its thread ended."""
    syncer.start()
    try:
        yield syncer
    finally:
        syncer.stop()
        assert not syncer.is_alive()
