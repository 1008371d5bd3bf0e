"""The typed resource syncer against a real etcd, including garbage written behind its back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from calico.datastore.api import SyncStatus, UpdateKind
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.datastore.resource_syncer import ResourceUpdate, resource_syncer
from calico.model import parse_resource
from calico.model.keys import ResourceKey
from calico.model.network import IPPool
from calico.model.policy import GlobalNetworkPolicy
from calico.testing import waiting

pytestmark = pytest.mark.integration


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.resources: dict[str, object] = {}
        self.status: SyncStatus | None = None
        self.log: list[tuple[UpdateKind, str]] = []

    def on_status(self, status: SyncStatus) -> None:
        self.status = status

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        with self.lock:
            for u in updates:
                self.log.append((u.kind, u.key.name))
                if u.resource is None:
                    self.resources.pop(u.key.path)
                else:
                    self.resources[u.key.path] = u.resource


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    waiting.wait_until(condition, timeout, interval=0.02)


def test_syncer_delivers_resources_and_skips_garbage(backend: EtcdBackend) -> None:
    client = ResourceClient(backend)
    pool = parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p1"},
            "spec": {"cidr": "198.19.0.0/16"},
        }
    )
    client.create(pool)
    garbage_key = ResourceKey(IPPool, "junk").path
    backend.put(garbage_key, b"\xff\xfe not json")
    state, invalid = State(), []
    syncer = resource_syncer(
        backend, [IPPool, GlobalNetworkPolicy], state, on_invalid=lambda k, r: invalid.append(k)
    )
    syncer.start()
    try:
        wait_for(lambda: state.status is SyncStatus.IN_SYNC)
        assert list(state.resources) == [ResourceKey(IPPool, "p1").path]
        assert invalid == [garbage_key]
        gnp = parse_resource(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "g"},
            }
        )
        client.create(gnp)
        wait_for(lambda: ResourceKey(GlobalNetworkPolicy, "g").path in state.resources)
        backend.put(ResourceKey(IPPool, "p1").path, b'{"kind": "IPPool"}')  # corrupt a valid one
        wait_for(lambda: ResourceKey(IPPool, "p1").path not in state.resources)
        assert state.log == [
            (UpdateKind.NEW, "p1"),
            (UpdateKind.NEW, "g"),
            (UpdateKind.DELETED, "p1"),
        ]
        assert syncer.is_alive()
    finally:
        syncer.stop()
