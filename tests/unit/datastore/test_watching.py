"""WatchThread, the base of every datastore watcher: retry with back-off, stop, failure."""

from __future__ import annotations

import pytest

from calico.backoff import Backoff
from calico.datastore.api import DatastoreUnavailable
from calico.datastore.memory import MemoryBackend
from calico.datastore.watching import WatchThread
from calico.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(20)


class Watcher(WatchThread):
    """Fails `failures` cycles, then watches /k/ until stopped (or raises `error` there)."""

    def __init__(self, backend: MemoryBackend, failures: int, error: Exception | None = None):
        self.delays: list[float] = []
        super().__init__("test-watch", Backoff(0.1, 0.4), sleep=self.delays.append)
        self.backend = backend
        self.failures = failures
        self.error = error
        self.cycles = 0

    def _cycle(self) -> None:
        self.cycles += 1
        if self.cycles <= self.failures:
            raise DatastoreUnavailable(f"failure {self.cycles}")
        if self.error is not None:
            raise self.error
        with self._watching(self.backend.watch("/k/", 1)) as batches:
            for _ in batches:
                pass


def test_datastore_errors_are_retried_with_back_off_then_stop_closes_the_watch() -> None:
    watcher = Watcher(MemoryBackend(), failures=4)
    watcher.start()
    wait_until(lambda: watcher.watching, 5, "the watcher gets to its watch", 0.01)
    assert watcher.delays == [0.1, 0.2, 0.4, 0.4]
    watcher.stop(timeout=5)
    assert not watcher.is_alive() and watcher.failure is None and not watcher.watching


def test_any_other_error_ends_the_thread_and_is_kept() -> None:
    watcher = Watcher(MemoryBackend(), failures=1, error=RuntimeError("bug"))
    watcher.start()
    watcher.join(5)
    assert not watcher.is_alive()
    assert isinstance(watcher.failure, RuntimeError) and watcher.delays == [0.1]


def test_stop_from_the_thread_itself_does_not_wait_for_itself() -> None:
    class SelfStopping(Watcher):
        def _cycle(self) -> None:
            self.stop()

    watcher = SelfStopping(MemoryBackend(), failures=0)
    watcher.start()
    watcher.join(5)
    assert not watcher.is_alive() and watcher.failure is None
