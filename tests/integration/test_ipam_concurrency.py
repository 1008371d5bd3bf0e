"""IPAM against a real etcd: contending allocators on several hosts, and etcd restarting under
them. Afterwards the datastore must hold exactly the successful allocations, once each, with
handle records that count them and a confirmed affinity for every host-affine block."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.api import Backend, DatastoreError, DatastoreUnavailable
from calico.datastore.client import ResourceClient
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.ipam import keys
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest, IPAMError
from calico.ipam.blocks import AllocationBlock
from calico.model.network import IPPool
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration
BackendFactory = Callable[..., EtcdBackend]


def create_pool(backend: Backend, cidr: str, block_size: int) -> None:
    pool = {"metadata": {"name": "pool"}, "spec": {"cidr": cidr, "blockSize": block_size}}
    ResourceClient(backend).create(IPPool.model_validate(pool))


def assert_ipam_consistent(backend: Backend, expected: dict[str, str]) -> list[AllocationBlock]:
    """The blocks hold exactly `expected` (address -> handle); handles and affinities agree."""
    blocks = [AllocationBlock.from_json(kv.value) for kv in backend.list(keys.BLOCKS_PREFIX).items]
    held: dict[str, str | None] = {}
    counts: dict[str, dict[str, int]] = {}
    for block in blocks:
        for alloc in block.allocated():
            assert alloc.address not in held, f"{alloc.address} allocated twice"
            held[alloc.address] = alloc.attribute.handle_id
        for handle, count in block.handle_counts().items():
            counts.setdefault(handle, {})[block.cidr] = count
    assert held == expected
    stored = {
        keys.parse_handle_key(kv.key): json.loads(kv.value)["block"]
        for kv in backend.list(keys.HANDLES_PREFIX).items
    }
    assert stored == counts
    affinities = {}
    for kv in backend.list(keys.HOSTS_PREFIX).items:
        parsed = keys.parse_affinity_key(kv.key)
        assert parsed is not None and json.loads(kv.value)["state"] == "confirmed", kv.key
        affinities[parsed[1]] = parsed[0]
    assert affinities == {b.cidr: b.host for b in blocks if b.host}
    return blocks


def borrowed(blocks: list[AllocationBlock]) -> int:
    return sum(
        1 for b in blocks for a in b.allocated() if a.attribute.secondary.get("node") != b.host
    )


def allocate(ipam: IPAMClient, handle: str, host: str) -> str:
    (address,) = ipam.auto_assign(AutoAssignRequest(handle, host, attrs={"pod": handle})).ipv4
    return address.split("/")[0]


def test_parallel_hosts_never_share_an_address(make_backend: BackendFactory) -> None:
    """5 hosts x 50 addresses from a /24 in /29 blocks: 35 blocks' worth of demand for 32
    blocks, so claims collide and some hosts must borrow."""
    hosts, per_host = 5, 50
    create_pool(make_backend(), "10.20.0.0/24", 29)
    clients = {f"host-{i}": IPAMClient(make_backend()) for i in range(hosts)}
    start = threading.Barrier(hosts)

    def run(host: str) -> dict[str, str]:
        start.wait()
        got = {}
        for i in range(per_host):
            handle = f"k8s-pod-network.{host}-{i}"
            got[allocate(clients[host], handle, host)] = handle
        return got

    with concurrent.futures.ThreadPoolExecutor(hosts) as pool:
        results = list(pool.map(run, clients, timeout=120))
    expected = {ip: handle for got in results for ip, handle in got.items()}
    assert len(expected) == hosts * per_host
    blocks = assert_ipam_consistent(make_backend(), expected)
    assert len(blocks) == 32 and borrowed(blocks) > 0
    ipam = next(iter(clients.values()))
    assert sum(p.in_use for p in ipam.usage()) == hosts * per_host


def _process_host(endpoint: str, host: str, count: int) -> dict[str, str]:
    """One host in its own process: allocate `count`, then release every third by handle."""
    backend = EtcdBackend(EtcdConfig(endpoints=(endpoint,)))
    try:
        ipam = IPAMClient(backend)
        got = {}
        for i in range(count):
            handle = f"net.{host}-{i}"
            got[allocate(ipam, handle, host)] = handle
            if i % 3 == 2:
                ipam.release_by_handle(handle)
                assert ipam.ips_by_handle(handle) == []
                got = {ip: h for ip, h in got.items() if h != handle}
        return got
    finally:
        backend.close()


def test_parallel_processes_allocate_and_release(
    etcd_server: EtcdServer, make_backend: BackendFactory
) -> None:
    create_pool(make_backend(), "10.21.0.0/25", 29)
    hosts = [f"proc-{i}" for i in range(4)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(len(hosts), mp_context=context) as pool:
        futures = [pool.submit(_process_host, etcd_server.endpoint, h, 36) for h in hosts]
        results = [f.result(timeout=180) for f in futures]
    expected = {ip: handle for got in results for ip, handle in got.items()}
    assert len(expected) == 4 * 24
    assert_ipam_consistent(make_backend(), expected)


class OutageCounter:
    """Wraps a backend and counts calls that found the datastore unavailable."""

    def __init__(self, inner: EtcdBackend) -> None:
        self._inner = inner
        self.unavailable = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except DatastoreUnavailable:
                self.unavailable += 1
                raise

        return call


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    waiting.wait_until(condition, timeout, what, interval=0.01)


class Allocator(threading.Thread):
    """One host allocating until stopped (at most 80), pausing briefly after a failure."""

    def __init__(self, host: str, backend: OutageCounter, stop: threading.Event) -> None:
        super().__init__()
        self.host = host
        self.backend = backend
        self.stop = stop
        self.succeeded: dict[str, str] = {}
        self.failed: list[str] = []

    def run(self) -> None:
        ipam = IPAMClient(self.backend, cleanup_timeout=60.0)  # type: ignore[arg-type]
        attempt = 0
        while len(self.succeeded) < 80 and not self.stop.is_set():
            attempt += 1
            handle = f"net.{self.host}-{attempt}"
            try:
                self.succeeded[allocate(ipam, handle, self.host)] = handle
            except (DatastoreError, IPAMError):
                self.failed.append(handle)
                self.stop.wait(0.05)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_etcd_restart_mid_allocation(
    how: str, etcd_server: EtcdServer, make_backend: BackendFactory
) -> None:
    """Allocations in flight when etcd goes away either complete or fail and leave nothing."""
    create_pool(make_backend(), "10.22.0.0/24", 29)
    stop = threading.Event()
    hosts = [
        Allocator(h, OutageCounter(make_backend(request_timeout=2.0)), stop)
        for h in ("host-a", "host-b", "host-c")
    ]
    for host in hosts:
        host.start()
    try:
        for cycle in range(2):
            progress(hosts, 25, f"allocations before outage {cycle}")
            seen = {h.host: h.backend.unavailable for h in hosts}
            outage(etcd_server, how)
            wait_for(
                lambda seen=seen: all(h.backend.unavailable > seen[h.host] for h in hosts),
                f"hosts to see outage {cycle}",
            )
            etcd_server.start()
        progress(hosts, 25, "allocations after the restarts")
    finally:
        stop.set()
        for host in hosts:
            host.join(timeout=120)
    assert not any(h.is_alive() for h in hosts)
    succeeded = {ip: handle for h in hosts for ip, handle in h.succeeded.items()}
    failed = {handle for h in hosts for handle in h.failed}
    assert failed, "no allocation was caught by the outage"
    assert_ipam_consistent(make_backend(), succeeded)
    assert not failed & set(succeeded.values())


def progress(hosts: list[Allocator], more: int, what: str) -> None:
    def done() -> int:
        return sum(len(h.succeeded) for h in hosts)

    target = done() + more
    wait_for(lambda: done() >= target, what)


def outage(server: EtcdServer, how: str) -> None:
    """Stop etcd gracefully or SIGKILL it (whose unix socket file then has to be removed by
    hand, or the restarted etcd cannot bind it)."""
    if how == "stop":
        server.stop()
        return
    server.kill()
    Path(server.unix_endpoint.removeprefix("unix://")).unlink(missing_ok=True)
