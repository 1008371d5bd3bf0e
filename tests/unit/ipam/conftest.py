"""Fixtures for IPAM unit tests: an in-memory datastore with pools, nodes and config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.ipam.allocator import IPAMClient
from calico.model.base import ObjectMeta
from calico.model.network import IPAMConfiguration, IPAMConfigurationSpec, IPPool, Node

PoolMaker = Callable[..., IPPool]


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def resources(backend: MemoryBackend) -> ResourceClient:
    return ResourceClient(backend)


@pytest.fixture
def ipam(backend: MemoryBackend) -> IPAMClient:
    return IPAMClient(backend, sleep=lambda _: None, cleanup_timeout=1.0)


@pytest.fixture
def make_pool(resources: ResourceClient) -> PoolMaker:
    def make(name: str, cidr: str, block_size: int | None = None, **spec: Any) -> IPPool:
        body: dict[str, Any] = {"cidr": cidr, **spec}
        if block_size is not None:
            body["blockSize"] = block_size
        pool = IPPool.model_validate({"metadata": {"name": name}, "spec": body})
        return resources.create(pool)

    return make


@pytest.fixture
def configure(resources: ResourceClient) -> Callable[..., None]:
    """configure(strictAffinity=..., maxBlocksPerHost=..., autoAllocateBlocks=...)."""

    def apply(**spec: Any) -> None:
        config = IPAMConfigurationSpec(**spec)
        resources.apply(IPAMConfiguration(metadata=ObjectMeta(name="default"), spec=config))

    return apply


@pytest.fixture
def add_node(resources: ResourceClient) -> Callable[..., None]:
    def add(name: str, **labels: str) -> None:
        resources.create(Node(metadata=ObjectMeta(name=name, labels=labels or None)))

    return add
