"""IPIP pools at node start: reported by name, with what the kernel could do; not served."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.model.keys import ResourceKey
from calico.model.network import IPPool
from calico.node.ipip import ipip_available, report_ipip_pools


def test_ipip_available_from_sys_module_or_the_link_probe(tmp_path: Path) -> None:
    def probe_must_not_run() -> bool:
        raise AssertionError("the module is there: no link needed")

    assert ipip_available(tmp_path, probe_must_not_run) is True
    assert ipip_available(tmp_path / "absent", lambda: True) is True
    assert ipip_available(tmp_path / "absent", lambda: False) is False


def stored_pool(backend: MemoryBackend, name: str, **spec: str) -> None:
    """As another tool would write it: the model refuses ipipMode, so bypass it."""
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
           "metadata": {"name": name}, "spec": spec}  # fmt: skip
    backend.put(ResourceKey(IPPool, name).path, json.dumps(doc).encode())


@pytest.mark.parametrize(("kernel", "says"), [(True, "has ipip support"),
                                              (False, "has no ipip support either")])  # fmt: skip
def test_ipip_pools_are_reported_by_name(
    kernel: bool, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MemoryBackend()
    client = ResourceClient(backend)
    stored_pool(backend, "plain", cidr="198.19.0.0/16")
    stored_pool(backend, "tunnelled", cidr="198.20.0.0/16", ipipMode="CrossSubnet")
    stored_pool(backend, "broken", cidr="not-a-cidr")
    with caplog.at_level(logging.ERROR, logger="calico.node.ipip"):
        assert report_ipip_pools(client, lambda: kernel) == ["tunnelled"]
    (record,) = [r for r in caplog.records if r.name == "calico.node.ipip"]
    assert "'tunnelled' asks for IPIP" in record.getMessage()
    assert says in record.getMessage() and "use vxlanMode" in record.getMessage()


def test_no_ipip_pool_no_probe() -> None:
    def probe_must_not_run() -> bool:
        raise AssertionError("nothing to report: no probe")

    assert report_ipip_pools(ResourceClient(MemoryBackend()), probe_must_not_run) == []
