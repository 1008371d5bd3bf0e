"""Elector against a real etcd: one leader, handover on stop, on stalled keepalives, restarts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calico.datastore.api import Backend, Watch
from calico.datastore.etcd import EtcdBackend
from calico.openstack import keys
from calico.openstack.election import Elector
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

BackendFactory = Callable[..., EtcdBackend]
KEY = keys.election_key("no-region")
TTL = 2


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    return waiting.wait_until(predicate, timeout, interval=0.02)


class Freezable:
    """A Backend whose keepalive() blocks while frozen: a SIGSTOPped neutron-server."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.thawed = threading.Event()
        self.thawed.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def keepalive(self, lease_id: int) -> int:
        self.thawed.wait()
        return int(self.inner.keepalive(lease_id))


class Counting:
    """A Backend counting the keepalives and watches that succeeded."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.keepalives = 0
        self.watches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def keepalive(self, lease_id: int) -> int:
        ttl = int(self.inner.keepalive(lease_id))
        self.keepalives += 1
        return ttl

    def watch(self, prefix: str, start_revision: int) -> Watch:
        watch = self.inner.watch(prefix, start_revision)
        self.watches += 1
        return watch


class Recorder:
    def __init__(self) -> None:
        self.changes: list[bool] = []
        self.threads: set[str] = set()

    def __call__(self, leader: bool) -> None:
        self.changes.append(leader)
        self.threads.add(threading.current_thread().name)


@pytest.fixture
def electors(make_backend: BackendFactory) -> Iterator[Callable[..., Elector]]:
    made: list[Elector] = []

    def make(server_id: str, backend: Backend | None = None, **kwargs: Any) -> Elector:
        elector = Elector(
            backend or make_backend(connect_timeout=0.5, request_timeout=1.0),
            KEY,
            server_id,
            ttl=kwargs.pop("ttl", TTL),
            **kwargs,
        )
        made.append(elector)
        elector.start()
        return elector

    yield make
    for elector in made:
        elector.stop()


def leaders(*electors: Elector) -> list[Elector]:
    return [e for e in electors if e.is_leader]


def test_one_leader_and_handover_on_stop(electors: Callable[..., Elector]) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    # A long TTL: lease expiry could not hand over within the time allowed below.
    a = electors("server-a", on_change=rec_a, ttl=5)
    wait_until(lambda: a.is_leader)
    b = electors("server-b", on_change=rec_b, ttl=5)
    wait_until(lambda: b.watching)  # lost the race, waits for a vacancy
    assert leaders(a, b) == [a]
    assert rec_b.changes == []

    a.stop()
    assert rec_a.changes == [True, False]
    assert rec_a.threads == {f"elector-{KEY}"}
    took = wait_until(lambda: b.is_leader, timeout=3.0)
    assert took < 2.0  # revoked lease: no waiting for the TTL
    assert rec_b.changes == [True]


def test_stalled_keepalives_hand_over_on_lease_expiry(
    electors: Callable[..., Elector], make_backend: BackendFactory
) -> None:
    frozen = Freezable(make_backend())
    rec_a = Recorder()
    a = electors("server-a", backend=frozen, on_change=rec_a)
    wait_until(lambda: a.is_leader)
    b = electors("server-b")
    wait_until(lambda: b.watching)
    assert leaders(a, b) == [a]

    frozen.thawed.clear()
    # The stuck leader stops claiming leadership before its lease can expire...
    wait_until(lambda: not a.is_leader, timeout=TTL)
    assert not b.is_leader
    # ...and the other server takes over once etcd expires the lease.
    wait_until(lambda: b.is_leader, timeout=TTL + 2)
    frozen.thawed.set()
    wait_until(lambda: rec_a.changes == [True, False])
    wait_until(lambda: a.watching)  # the thawed server tried again, lost, and waits
    assert leaders(a, b) == [b]


def test_survives_etcd_restart(
    electors: Callable[..., Elector], etcd_server: EtcdServer, make_backend: BackendFactory
) -> None:
    """After the restart the leader keeps its lease alive in the new etcd and the other server
    watches it again (its old watch died with the old etcd)."""
    backends = [Counting(make_backend(connect_timeout=0.5, request_timeout=1.0)) for _ in "ab"]
    a = electors("server-a", backend=backends[0])
    wait_until(lambda: a.is_leader)
    b = electors("server-b", backend=backends[1])
    wait_until(lambda: b.watching)
    etcd_server.restart()
    before = [(c.keepalives, c.watches) for c in backends]

    def recovered() -> bool:
        if len(leaders(a, b)) != 1:
            return False
        lead = 0 if a.is_leader else 1
        return (
            backends[lead].keepalives > before[lead][0]
            and backends[1 - lead].watches > before[1 - lead][1]
            and (b if lead == 0 else a).watching
        )

    wait_until(recovered, timeout=TTL + 5)


def test_leader_steps_down_during_outage_and_someone_leads_after(
    electors: Callable[..., Elector], etcd_server: EtcdServer
) -> None:
    rec_a = Recorder()
    a = electors("server-a", on_change=rec_a)
    wait_until(lambda: a.is_leader)
    b = electors("server-b")
    etcd_server.stop()
    wait_until(lambda: not a.is_leader, timeout=TTL + 1)
    etcd_server.start()
    # Settled: one leads, the other has lost the race and waits for a vacancy.
    wait_until(lambda: len(leaders(a, b)) == 1 and (a.watching or b.watching), timeout=TTL + 5)
    assert len(leaders(a, b)) == 1


def test_deleted_key_is_noticed(
    electors: Callable[..., Elector], make_backend: BackendFactory
) -> None:
    rec_a = Recorder()
    a = electors("server-a", on_change=rec_a)
    wait_until(lambda: a.is_leader)
    make_backend().delete(KEY)
    wait_until(lambda: rec_a.changes[:2] == [True, False], timeout=TTL)
    wait_until(lambda: a.is_leader, timeout=TTL + 2)  # alone, it wins again


def test_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        Elector(None, KEY, "x", ttl=0)  # type: ignore[arg-type]
