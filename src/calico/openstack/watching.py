"""The thread shape shared by the driver's etcd watchers (elector, status, resync requests).

Each runs one named daemon thread that lists/watches etcd and backs off on datastore errors;
`stop()` must end it promptly from another thread, which means closing the watch it is
blocked in, so the open watch is registered while it is iterated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from calico.datastore.api import Watch, WatchEvent


class WatchThread:
    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def watching(self) -> bool:
        """Blocked in a watch: caught up with etcd, waiting for its next change."""
        with self._lock:
            return self._watch is not None

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError

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
