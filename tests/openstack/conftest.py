"""The Neutron driver tier: real Neutron in-process (the `openstack` extra) and a real etcd.

Every test gets its own throwaway etcd (~0.1 s to start), handed to unittest-style test
classes as `self.etcd`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from calico.testing.etcd_server import EtcdServer

pytest.importorskip("neutron", reason="Neutron not installed (pip install -e '.[openstack]')")


@pytest.fixture(autouse=True)
def calico_etcd(request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    with EtcdServer() as server:
        if request.instance is not None:
            request.instance.etcd = server
        yield server
