"""ResourceClient.update against a real etcd, with other connections writing concurrently."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.model.base import ObjectMeta
from calico.model.network import IPPool, IPPoolSpec

pytestmark = pytest.mark.integration
BackendFactory = Callable[..., EtcdBackend]


def counted(current: IPPool) -> IPPool:
    labels = current.metadata.labels or {}
    current.metadata.labels = {**labels, "n": str(int(labels.get("n", "0")) + 1)}
    return current


def test_a_write_from_another_connection_forces_a_retry_and_is_kept(
    make_backend: BackendFactory,
) -> None:
    mine, theirs = ResourceClient(make_backend()), ResourceClient(make_backend())
    mine.create(IPPool(metadata=ObjectMeta(name="p1"), spec=IPPoolSpec(cidr="198.19.0.0/16")))
    reads: list[str | None] = []

    def mutate(current: IPPool) -> IPPool:
        reads.append(current.metadata.resourceVersion)
        if len(reads) == 1:  # their write lands between our read and our compare-and-swap
            theirs.update(IPPool, "p1", None, counted)
        return counted(current)

    result = mine.update(IPPool, "p1", None, mutate)
    assert len(reads) == 2 and reads[0] != reads[1]
    assert result.changed
    assert theirs.get(IPPool, "p1").metadata.labels == {"n": "2"}


def test_concurrent_updaters_lose_no_update(make_backend: BackendFactory) -> None:
    writers, rounds = 4, 10
    clients = [ResourceClient(make_backend()) for _ in range(writers)]
    clients[0].create(IPPool(metadata=ObjectMeta(name="p1"), spec=IPPoolSpec(cidr="198.19.0.0/16")))
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def run(client: ResourceClient) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                client.update(IPPool, "p1", None, counted, attempts=writers * rounds)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert clients[0].get(IPPool, "p1").metadata.labels == {"n": str(writers * rounds)}
