"""Felix's calc thread: several syncers feed one calculation graph, on one thread.

Felix reads two disjoint subtrees of the datastore: the v3 resources and the IPAM blocks
(block CIDR -> affine host, for the VXLAN routes). One syncer over both would list and
watch the whole of `/calico/` (status reports, handles, affinities...), so each subtree has
its own syncer and thread. Their callbacks only decode and queue; the calc thread runs the
queued work in arrival order, so the graph stays single-threaded and each syncer's updates
keep their order. The queue is bounded: a calc thread that falls behind blocks the
syncers, as the graph running on the syncer thread used to.

In sync: the consumer hears IN_SYNC only once every source is in sync, and RESYNC as soon
as any source loses sync. Declaring in-sync before the block snapshot is in would let the
dataplane apply a route table without the remote blocks, removing routes a restarted Felix
should have kept.

Flushes: the consumer applies each queued batch as it comes and emits its messages when the
feed calls `flush()`: after a batch, at once if the last flush was `flush_interval` ago or
more, else when that interval is up, with what else has come meanwhile. A change after a
quiet spell goes out at once; under a stream of them (one watch event per batch) the graph's
flush (diffing and ordering what changed) and the dataplane's wake-up happen at most 1 /
`flush_interval` times a second instead of once per event.

Blocks that do not decode (bad key or JSON, inconsistent block) are logged and count as
absent: garbage in the datastore must not stop Felix, nor leave a stale route behind.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from calico.datastore.api import SyncStatus, Update
from calico.datastore.resource_syncer import ResourceUpdate
from calico.ipam.blocks import AllocationBlock, BlockFormatError
from calico.ipam.keys import parse_block_key

log = logging.getLogger(__name__)
Block = tuple[str, str | None]  # block CIDR, affine host (None: gone or no host affinity)


class FeedConsumer(Protocol):
    """What the calc thread drives (Felix's graph adapter)."""

    def on_status(self, status: SyncStatus) -> None: ...

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None: ...

    def on_block_updates(self, blocks: Sequence[Block]) -> None: ...

    def flush(self) -> None:
        """Emit what the batches since the last flush changed."""
        ...


class CalcFeed:
    def __init__(
        self, consumer: FeedConsumer, *, maxsize: int = 64, flush_interval: float = 0.0
    ) -> None:
        self.name = "felix-calc"
        self.failure: BaseException | None = None
        self._consumer = consumer
        self._flush_interval = flush_interval
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize)
        self._done = threading.Event()
        self._statuses: list[SyncStatus | None] = []
        self._status: SyncStatus | None = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # -- sources (called on the syncers' threads) -----------------------------------------

    def resource_source(self) -> _Resources:
        """ResourceCallbacks for the resource syncer."""
        return _Resources(self, self._add_source(), self._consumer)

    def block_source(self) -> _Blocks:
        """SyncerCallbacks for the raw syncer of the IPAM blocks."""
        return _Blocks(self, self._add_source(), self._consumer)

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job` for the calc thread; blocks while the queue is full. Dropped once the
        feed is stopped (or its thread died), so a syncer never hangs on a dead feed."""
        while not self._done.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(job, timeout=0.2)
                return

    def _add_source(self) -> int:
        self._statuses.append(None)
        return len(self._statuses) - 1

    # -- the calc thread ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._done.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wakes an idle thread; a busy one sees _done
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        unflushed = False
        due = 0.0  # when a flush may come next
        try:
            while not self._done.is_set():
                wait = due - time.monotonic() if unflushed else None
                if wait is not None and wait <= 0:
                    self._consumer.flush()
                    unflushed = False
                    due = time.monotonic() + self._flush_interval
                    continue
                try:
                    job = self._queue.get(timeout=wait)
                except queue.Empty:
                    continue  # the flush is due
                if job is None or self._done.is_set():
                    return
                job()
                unflushed = True
        except Exception as exc:  # the graph's state is unknown now: the supervisor exits
            log.exception("%s: stopped by an unexpected error", self.name)
            self.failure = exc
            self._done.set()

    def _on_status(self, index: int, status: SyncStatus) -> None:
        """On the calc thread: combine the sources' statuses; pass on changes only."""
        self._statuses[index] = status
        if all(s is SyncStatus.IN_SYNC for s in self._statuses):
            combined = SyncStatus.IN_SYNC
        elif any(s in (SyncStatus.RESYNC, SyncStatus.IN_SYNC) for s in self._statuses):
            combined = SyncStatus.RESYNC
        else:
            combined = SyncStatus.WAIT_FOR_READY
        if combined is not self._status:
            self._status = combined
            self._consumer.on_status(combined)


class _Source:
    """One syncer's callbacks: they run on its thread and queue the work for the calc thread."""

    def __init__(self, feed: CalcFeed, index: int, consumer: FeedConsumer) -> None:
        self._feed, self._index, self._consumer = feed, index, consumer

    def on_status(self, status: SyncStatus) -> None:
        self._feed.submit(lambda: self._feed._on_status(self._index, status))


class _Resources(_Source):
    """ResourceCallbacks of the resource syncer's decoder."""

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        self._feed.submit(lambda: self._consumer.on_resource_updates(updates))


class _Blocks(_Source):
    """SyncerCallbacks of the block syncer: raw updates are decoded here, on its thread."""

    def on_updates(self, updates: Sequence[Update]) -> None:
        blocks = [b for b in map(decode_block, updates) if b is not None]
        if blocks:
            self._feed.submit(lambda: self._consumer.on_block_updates(blocks))


def decode_block(update: Update) -> Block | None:
    """(CIDR, affine host) of a block update; None for a key that names no block. A value
    that does not decode, or a block marked deleted, has no host."""
    cidr = parse_block_key(update.key)
    if cidr is None:
        log.warning("ignoring a key that names no IPAM block: %s", update.key)
        return None
    if update.value is None:
        return cidr, None
    try:
        block = AllocationBlock.from_json(update.value)
    except BlockFormatError as exc:
        log.warning("ignoring invalid IPAM block at %s: %s", update.key, exc)
        return cidr, None
    if block.cidr != cidr:
        log.warning("ignoring IPAM block %s stored at %s", block.cidr, update.key)
        return cidr, None
    return cidr, None if block.deleted else block.host
