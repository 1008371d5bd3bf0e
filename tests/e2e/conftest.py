"""E2E fixtures: whole labs (etcd, `calico node run` per host, BIRD, FRR, CNI workloads) built
with `calico.lab.Lab`, the same machinery as `calico lab`. Labs are module-scoped: tests in a
module share one lab and leave it as they found it (policies removed, extra workloads gone)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import ResourceNotFound
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.model import parse_manifest
from calico.model.base import Resource
from calico.model.endpoints import IPNAT, WorkloadEndpoint
from calico.testing import waiting

TOOLS = ("etcd", "bird", "birdc", "ip", "nsenter", "ss", "ping", "/usr/lib/frr/bgpd", "vtysh")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def require_lab_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: labs are built from network namespaces")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")


def wait_until(
    predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> float:
    """Seconds waited (see calico.testing.waiting.wait_until)."""
    return waiting.wait_until(predicate, timeout, what)


def lab_fixture(text: str, tmp: Path) -> Iterator[Lab]:
    """Bring a lab up for a module; always take it down (printing where it failed)."""
    require_lab_tools()
    spec = load_lab(text, "e2e lab", tmp)
    with running_lab(spec, tmp / "state", lambda msg: print(f"lab {spec.name}: {msg}")) as lab:
        yield lab


def reaches(
    lab: Lab, src: str, dst: str, proto: str = "tcp", port: int | None = None, ipv6: bool = False
) -> bool:
    return lab.probe(src, dst, proto, port, ipv6, timeout=1.0).ok


def eventually(
    lab: Lab, src: str, dst: str, expect: bool, timeout: float = 15.0, **kwargs: object
) -> None:
    """Wait until the probe's outcome is `expect` (policy and routes take effect async)."""
    wait_until(
        lambda: reaches(lab, src, dst, **kwargs) is expect,
        timeout,  # type: ignore[arg-type]
        f"{src} -> {dst} {kwargs} {'connects' if expect else 'is blocked'}",
    )


def apply(lab: Lab, manifest: str) -> None:
    for resource in parse_manifest(manifest):
        lab.client.apply(resource)


def delete(lab: Lab, kind: type[Resource], name: str, namespace: str | None = None) -> None:
    with contextlib.suppress(ResourceNotFound):
        lab.client.delete(kind, name, namespace)


def endpoint_of(lab: Lab, name: str) -> WorkloadEndpoint:
    """The WorkloadEndpoint CNI wrote for the lab workload `name`."""
    ws = lab.state.workloads[name]
    for wep in lab.client.list(WorkloadEndpoint, ws.namespace).items:
        assert isinstance(wep, WorkloadEndpoint)
        if wep.spec.containerID == ws.container_id:
            return wep
    raise AssertionError(f"no WorkloadEndpoint for {name}")


def set_nats(lab: Lab, name: str, nats: list[IPNAT] | None) -> WorkloadEndpoint:
    """Give the workload's endpoint these NAT mappings (floating IPs); None removes them."""
    wep = endpoint_of(lab, name)
    wep.spec.ipNATs = nats
    return lab.client.replace(wep)
