"""The thread every datastore watcher runs on (the Syncer, and watchers with their own cycle,
such as the Neutron driver's elector).

One named daemon thread repeats `_cycle()` (typically: list, then watch until the watch ends)
until stopped; a `DatastoreError` from it is retried after a capped exponential back-off.
`stop()` must end the thread promptly from another thread, which means closing the watch it is
blocked in, so the open watch is registered while it is iterated (`_watching`). Any other
exception (typically from a consumer callback) ends the thread and is kept in `failure`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from calico.backoff import Backoff
from calico.datastore.api import DatastoreError, Watch, WatchEvent

_log = logging.getLogger(__name__)


class WatchThread:
    def __init__(
        self, name: str, backoff: Backoff, *, sleep: Callable[[float], object] | None = None
    ) -> None:
        """sleep is injectable for tests; the default wakes up early on stop()."""
        self.name = name
        self.failure: BaseException | None = None
        self._backoff = backoff
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._lock = threading.Lock()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def watching(self) -> bool:
        """Blocked in a watch: caught up with the datastore, waiting for its next change."""
        with self._lock:
            return self._watch is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; closing the open watch makes it return promptly.

        Callable from the thread itself too (then it cannot wait for its own end).
        """
        self._stop.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (it only ends by stop() or an unexpected error)."""
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._cycle()
                except DatastoreError as exc:
                    if not self._stop.is_set():
                        self._sleep(self._retry_delay(exc))
        except Exception as exc:
            _log.exception("%s: stopped by an unexpected error", self.name)
            self.failure = exc

    def _cycle(self) -> None:
        raise NotImplementedError

    def _retry_delay(self, exc: DatastoreError) -> float:
        """How long to wait before the next cycle after `exc` (logged here)."""
        delay = self._backoff.delay()
        _log.warning("%s: %s; retrying in %.1fs", self.name, exc, delay)
        return delay

    @contextmanager
    def _watching(self, watch: Watch) -> Iterator[Iterable[Sequence[WatchEvent]]]:
        """Iterate `watch` where stop() can close it; nothing to iterate once stopping."""
        with self._lock:
            self._watch = watch
        try:
            yield () if self._stop.is_set() else watch
        finally:
            with self._lock:
                self._watch = None
            watch.close()
