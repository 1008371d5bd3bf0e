"""Syncer against MemoryBackend where its switches are needed: outages, backoff, stop, a failing
consumer (snapshot, live updates and resync run over both backends in
tests/integration/test_syncer_contract.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import pytest

from calico.datastore.api import SyncStatus, Update, UpdateKind
from calico.datastore.memory import MemoryBackend
from calico.datastore.syncer import Syncer
from calico.testing import recording
from calico.testing.recording import RecordingCallbacks

pytestmark = pytest.mark.timeout(20)

A, B = "/p/a/", "/p/b/"
READY = [SyncStatus.WAIT_FOR_READY, SyncStatus.RESYNC, SyncStatus.IN_SYNC]


class Sleeps:
    """Injected sleep: records delays and runs an optional hook instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hook: Callable[[int], None] = lambda count: None

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.hook(len(self.delays))


def running(
    backend: MemoryBackend, consumer: RecordingCallbacks, **kwargs: object
) -> AbstractContextManager[Syncer]:
    return recording.running(Syncer(backend, (A, B), consumer, **kwargs))  # type: ignore[arg-type]


def in_sync(consumer: RecordingCallbacks, backend: MemoryBackend) -> Callable[[], bool]:
    return consumer.in_sync_with(backend, (A, B))


def seed(backend: MemoryBackend) -> None:
    for i in range(3):
        backend.put(f"{A}{i}", b"a")
        backend.put(f"{B}{i}", b"b")
    backend.put("/p/ab", b"outside both prefixes")
    backend.put("/p/c/0", b"outside both prefixes")


def change_everything(backend: MemoryBackend) -> dict[str, UpdateKind]:
    backend.put(f"{A}new", b"new")
    backend.put(f"{A}1", b"changed")
    backend.delete(f"{B}1")
    backend.put(f"{B}2", b"b")  # same value, new mod_revision
    backend.put("/p/c/1", b"outside")
    return {
        f"{A}new": UpdateKind.NEW,
        f"{A}1": UpdateKind.UPDATED,
        f"{B}1": UpdateKind.DELETED,
        f"{B}2": UpdateKind.UPDATED,
    }


def test_outage_backs_off_exponentially_then_resyncs() -> None:
    backend, consumer, sleeps = MemoryBackend(), RecordingCallbacks(), Sleeps()
    seed(backend)
    expected: dict[str, UpdateKind] = {}

    def recover_on_fifth(count: int) -> None:
        if count == 5:  # runs in the syncer thread, so this is deterministic
            backend.set_unavailable(False)
            expected.update(change_everything(backend))

    sleeps.hook = recover_on_fifth
    with running(backend, consumer, sleep=sleeps, initial_backoff=0.1, max_backoff=0.4):
        consumer.wait_for(in_sync(consumer, backend))
        consumer.clear_history()
        backend.set_unavailable(True)
        consumer.wait_for(lambda: consumer.status is SyncStatus.IN_SYNC and len(sleeps.delays) == 5)
    assert sleeps.delays == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert consumer.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
    assert consumer.kinds() == expected


def test_waits_for_ready_while_the_datastore_is_down() -> None:
    backend, consumer, sleeps = MemoryBackend(), RecordingCallbacks(), Sleeps()
    backend.set_unavailable(True)
    sleeps.hook = lambda count: backend.set_unavailable(count < 3)
    with running(backend, consumer, sleep=sleeps):
        consumer.wait_for(lambda: consumer.status is SyncStatus.IN_SYNC)
    assert consumer.statuses == READY
    assert len(sleeps.delays) == 3


def test_backoff_restarts_after_a_healthy_spell() -> None:
    backend, consumer, sleeps = MemoryBackend(), RecordingCallbacks(), Sleeps()
    now = 0.0
    sleeps.hook = lambda count: backend.set_unavailable(False)
    with running(backend, consumer, sleep=sleeps, clock=lambda: now, max_backoff=10.0):
        for count in range(1, 5):
            consumer.wait_for(lambda: consumer.status is SyncStatus.IN_SYNC)
            if count == 4:
                now += 100  # in sync for longer than max_backoff: a fresh incident
            backend.set_unavailable(True)
            consumer.wait_for(lambda: len(sleeps.delays) == count)  # noqa: B023
    assert sleeps.delays == [0.1, 0.2, 0.4, 0.1]


def test_a_long_outage_stays_at_the_ceiling() -> None:
    """Only a spell in sync starts the back-off over, not time spent failing."""
    backend, consumer, sleeps = MemoryBackend(), RecordingCallbacks(), Sleeps()
    now = 0.0

    def advance(count: int) -> None:
        nonlocal now
        now += sleeps.delays[-1]
        backend.set_unavailable(count < 6)

    sleeps.hook = advance
    with running(backend, consumer, sleep=sleeps, clock=lambda: now, max_backoff=0.4):
        consumer.wait_for(lambda: consumer.status is SyncStatus.IN_SYNC)
        backend.set_unavailable(True)
        consumer.wait_for(lambda: len(sleeps.delays) == 6)
    assert sleeps.delays == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]


def test_stop_is_prompt_while_watching_and_while_backing_off() -> None:
    backend, consumer = MemoryBackend(), RecordingCallbacks()
    syncer = Syncer(backend, (A,), consumer)
    syncer.start()
    consumer.wait_for(lambda: consumer.status is SyncStatus.IN_SYNC)
    syncer.stop(timeout=5)
    assert not syncer.is_alive()

    backend.set_unavailable(True)
    syncer = Syncer(backend, (A,), consumer, initial_backoff=60, max_backoff=60)
    syncer.start()
    syncer.stop(timeout=5)
    assert not syncer.is_alive()


def test_a_failing_consumer_stops_the_syncer() -> None:
    backend = MemoryBackend()
    backend.put(f"{A}k", b"v")

    class Broken(RecordingCallbacks):
        def on_updates(self, updates: Sequence[Update]) -> None:
            raise RuntimeError("consumer bug")

    syncer = Syncer(backend, (A,), Broken())
    syncer.start()
    syncer.join(5)
    assert not syncer.is_alive()
    assert isinstance(syncer.failure, RuntimeError)


def test_prefixes_without_a_common_prefix() -> None:
    backend, consumer = MemoryBackend(), RecordingCallbacks()
    backend.put("/x/1", b"1")
    backend.put("y/2", b"2")
    backend.put("/z/3", b"3")
    with recording.running(Syncer(backend, ("/x/", "y/"), consumer)):
        consumer.wait_for(lambda: consumer.state == {"/x/1": b"1", "y/2": b"2"})


def test_needs_a_prefix() -> None:
    with pytest.raises(ValueError, match="prefix"):
        Syncer(MemoryBackend(), (), RecordingCallbacks())
