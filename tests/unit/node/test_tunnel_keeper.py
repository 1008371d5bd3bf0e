"""The VXLAN tunnel keeper's failure paths over the in-memory datastore: a failed pass is
retried, a missing Node is waited for, a watch that died stops the node.
(Following changes and idle silence against real etcd: tests/integration/test_node_tunnels.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from calico.backoff import Backoff
from calico.datastore.api import Update
from calico.datastore.memory import MemoryBackend
from calico.ipam.allocator import IPAMClient
from calico.model import parse_resource
from calico.model.base import ObjectMeta
from calico.model.network import Node, NodeSpec
from calico.node.tunnels import TunnelAddresses, TunnelKeeper
from calico.testing.waiting import wait_until

NODE = "host-1"


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def ipam(backend: MemoryBackend) -> IPAMClient:
    client = IPAMClient(backend, sleep=lambda _: None, cleanup_timeout=1.0)
    client.resources.ensure_initialized()
    pool = {"metadata": {"name": "v4"}, "spec": {"cidr": "198.19.0.0/24", "vxlanMode": "Always"}}
    client.resources.apply(
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", **pool})
    )
    return client


@pytest.fixture
def keeper(backend: MemoryBackend, ipam: IPAMClient) -> Iterator[TunnelKeeper]:
    keeper = TunnelKeeper(backend, TunnelAddresses(ipam, NODE), retry=Backoff(0.1, 0.1))
    yield keeper
    keeper.stop()


def register(ipam: IPAMClient) -> None:
    ipam.resources.create(Node(metadata=ObjectMeta(name=NODE), spec=NodeSpec()))


def address(ipam: IPAMClient) -> str | None:
    return ipam.resources.get(Node, NODE).spec.ipv4VXLANTunnelAddr


def follow(keeper: TunnelKeeper, done: Callable[[], object], what: str) -> None:
    wait_until(lambda: (keeper.check(), done())[1], timeout=10.0, what=what)


def test_a_failed_pass_is_retried(
    backend: MemoryBackend, ipam: IPAMClient, keeper: TunnelKeeper
) -> None:
    register(ipam)
    backend.set_unavailable(True)
    keeper.check()  # the first pass fails
    backend.set_unavailable(False)
    # Not started: no watch reports anything, only the retry can make the pass.
    follow(keeper, lambda: address(ipam), "address allocated by the retry")


def test_a_missing_node_is_waited_for(ipam: IPAMClient, keeper: TunnelKeeper) -> None:
    keeper.start()
    keeper.check()  # not registered yet: nothing to do until the Node appears
    register(ipam)
    follow(keeper, lambda: address(ipam), "address allocated once the Node exists")


def test_a_dead_watch_stops_the_node(
    ipam: IPAMClient, keeper: TunnelKeeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(updates: Sequence[Update]) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(keeper, "on_updates", broken)
    keeper.start()  # the initial listings are delivered and fail
    with pytest.raises(RuntimeError, match=r"tunnels-\w+ stopped: bug"):
        wait_until(lambda: keeper.check(), timeout=10.0, what="check raising")
