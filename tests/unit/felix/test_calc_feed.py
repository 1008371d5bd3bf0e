"""The calc thread: two sources, one thread, one combined sync status; blocks decoded and
garbage ignored."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from calico.datastore.api import SyncStatus, Update, UpdateKind
from calico.datastore.resource_syncer import ResourceUpdate
from calico.felix.calc_feed import Block, CalcFeed, decode_block
from calico.ipam.blocks import AllocationBlock
from calico.ipam.keys import block_key, blocks_prefix
from calico.testing import waiting


class Consumer:
    def __init__(self) -> None:
        self.log: list[object] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()
        self.flushes: list[int] = []
        self.flushed_at: list[float] = []

    def on_status(self, status: SyncStatus) -> None:
        self._record(status)

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        self._record(("resources", len(updates)))

    def on_block_updates(self, blocks: Sequence[Block]) -> None:
        self.release.wait()
        if blocks == [("198.19.9.0/26", "boom")]:
            raise RuntimeError("boom")
        self._record(("blocks", list(blocks)))

    def flush(self) -> None:
        self.flushes.append(len(self.log))  # how much the consumer had seen by then
        self.flushed_at.append(time.monotonic())

    def _record(self, item: object) -> None:
        self.threads.add(threading.current_thread().name)
        self.log.append(item)


def block_update(cidr: str, host: str | None, **extra: object) -> Update:
    data = json.loads(AllocationBlock.new(cidr, host, 1).to_json())
    data.update(extra)
    return Update(UpdateKind.NEW, block_key(cidr), json.dumps(data).encode(), 1)


@pytest.fixture
def fed() -> Iterator[tuple[Consumer, CalcFeed]]:
    consumer = Consumer()
    feed = CalcFeed(consumer, maxsize=2)
    feed.start()
    yield consumer, feed
    consumer.release.set()
    feed.stop()


def test_in_sync_only_once_every_source_is(fed: tuple[Consumer, CalcFeed]) -> None:
    consumer, feed = fed
    resources, blocks = feed.resource_source(), feed.block_source()
    resources.on_status(SyncStatus.WAIT_FOR_READY)
    blocks.on_status(SyncStatus.WAIT_FOR_READY)
    resources.on_status(SyncStatus.RESYNC)
    resources.on_resource_updates([])
    resources.on_status(SyncStatus.IN_SYNC)  # blocks are not in yet: still resyncing
    blocks.on_status(SyncStatus.RESYNC)
    blocks.on_updates([block_update("198.19.0.0/26", "h1")])
    blocks.on_status(SyncStatus.IN_SYNC)
    blocks.on_status(SyncStatus.RESYNC)  # any source losing sync is a resync
    blocks.on_status(SyncStatus.IN_SYNC)
    waiting.wait_until(lambda: len(consumer.log) == 7, 5)
    assert consumer.log == [
        SyncStatus.WAIT_FOR_READY,
        SyncStatus.RESYNC,
        ("resources", 0),
        ("blocks", [("198.19.0.0/26", "h1")]),
        SyncStatus.IN_SYNC,
        SyncStatus.RESYNC,
        SyncStatus.IN_SYNC,
    ]
    assert consumer.threads == {"felix-calc"}


def test_each_batch_is_flushed_when_the_feed_has_no_interval(
    fed: tuple[Consumer, CalcFeed],
) -> None:
    consumer, feed = fed
    resources = feed.resource_source()
    for _ in range(3):
        resources.on_resource_updates([])
    waiting.wait_until(lambda: len(consumer.flushes) == 3, 5)
    assert consumer.flushes == [1, 2, 3]


def test_a_stream_of_batches_is_flushed_once_an_interval() -> None:
    consumer = Consumer()
    feed = CalcFeed(consumer, flush_interval=1.0)
    feed.start()
    try:
        resources = feed.resource_source()
        resources.on_resource_updates([])  # after a quiet spell: flushed at once
        waiting.wait_until(lambda: consumer.flushes == [1], 5)
        resources.on_resource_updates([])
        resources.on_resource_updates([])
        waiting.wait_until(lambda: len(consumer.log) == 3, 5)
        assert consumer.flushes == [1]  # applied, not flushed yet
        waiting.wait_until(lambda: len(consumer.flushes) == 2, 5)
        assert consumer.flushed_at[1] - consumer.flushed_at[0] >= 1.0
        assert consumer.flushes == [1, 3]  # both in one flush
    finally:
        feed.stop()


def test_a_failing_consumer_ends_the_feed_and_frees_its_sources(
    fed: tuple[Consumer, CalcFeed],
) -> None:
    _, feed = fed
    blocks = feed.block_source()
    blocks.on_updates([block_update("198.19.9.0/26", "boom")])
    waiting.wait_until(lambda: not feed.is_alive(), 5)
    assert isinstance(feed.failure, RuntimeError)
    for _ in range(5):  # more than the queue holds: dropped, not blocking the syncer
        blocks.on_updates([block_update("198.19.0.0/26", "h1")])


def test_stop_frees_a_source_blocked_on_a_full_queue(fed: tuple[Consumer, CalcFeed]) -> None:
    consumer, feed = fed
    consumer.release.clear()  # the calc thread is busy
    blocks = feed.block_source()
    done = threading.Event()

    def flood() -> None:
        for i in range(6):
            blocks.on_updates([block_update(f"198.19.{i}.0/26", "h1")])
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert not done.wait(0.3)  # blocked: back-pressure
    feed.stop(timeout=0)
    consumer.release.set()
    assert done.wait(5)


def test_decode_block(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    cidr = "198.19.0.0/26"
    assert decode_block(block_update(cidr, "h1")) == (cidr, "h1")
    assert decode_block(block_update(cidr, None)) == (cidr, None)
    assert decode_block(block_update(cidr, "h1", deleted=True)) == (cidr, None)
    assert decode_block(Update(UpdateKind.DELETED, block_key(cidr), None, 2)) == (cidr, None)
    assert decode_block(Update(UpdateKind.NEW, block_key(cidr), b"\xff junk", 2)) == (cidr, None)
    inconsistent = block_update(cidr, "h1", allocations=[None])  # one slot for 64 addresses
    assert decode_block(inconsistent) == (cidr, None)
    elsewhere = block_update("198.19.1.0/26", "h1")
    moved = Update(UpdateKind.NEW, block_key(cidr), elsewhere.value, 2)
    assert decode_block(moved) == (cidr, None)
    assert decode_block(Update(UpdateKind.NEW, blocks_prefix(4) + "nonsense", b"{}", 2)) is None
    assert len(caplog.records) == 4 and all(r.levelname == "WARNING" for r in caplog.records)
