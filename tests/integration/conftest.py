"""Fixtures for tests against a real, throwaway etcd (see calico.testing.etcd_server), and
`store`: the Backend contract suites' MemoryBackend or (marked integration) real etcd."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calico.datastore.api import Backend
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.memory import MemoryBackend
from calico.testing.etcd_server import EtcdServer

BackendFactory = Callable[..., EtcdBackend]


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """A fresh etcd per test: tests stop, restart and compact it freely."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    with EtcdServer() as server:
        yield server


@pytest.fixture
def make_backend(etcd_server: EtcdServer) -> Iterator[BackendFactory]:
    """EtcdBackend(EtcdConfig(endpoints=(etcd_server.endpoint,), **overrides)); all closed after."""
    backends: list[EtcdBackend] = []

    def make(
        endpoints: tuple[str, ...] | None = None, page_size: int = 1000, **config: Any
    ) -> EtcdBackend:
        backend = EtcdBackend(
            EtcdConfig(endpoints=endpoints or (etcd_server.endpoint,), **config),
            page_size=page_size,
        )
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()


@pytest.fixture
def backend(make_backend: BackendFactory) -> EtcdBackend:
    return make_backend()


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Backend:
    """Each contract test runs twice: over MemoryBackend, and over a fresh real etcd."""
    if request.param == "memory":
        return MemoryBackend()
    etcd: Backend = request.getfixturevalue("backend")
    return etcd
