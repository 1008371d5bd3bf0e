"""The DHCP agent's loop against the in-memory datastore, with a recording dnsmasq manager."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.model import parse_resource
from calico.model.endpoints import WorkloadEndpoint
from calico.openstack import keys
from calico.openstack.dhcp.agent import DhcpAgent, endpoint_prefix
from calico.openstack.dhcp.config import NetworkConfig, RenderOptions
from calico.testing import waiting

NET = "0a1b2c3d-0000-4000-8000-000000000001"
HOST = "compute-1"


class RecordingManager:
    def __init__(self) -> None:
        self.adopted = False
        self.applied: list[dict[str, NetworkConfig]] = []
        self.stopped = False
        self.fail = False
        self.lock = threading.Lock()

    def adopt(self) -> None:
        self.adopted = True

    def apply(self, desired: Mapping[str, NetworkConfig]) -> bool:
        with self.lock:
            self.applied.append(dict(desired))
        return not self.fail

    def stop_all(self) -> None:
        self.stopped = True

    def last(self) -> dict[str, NetworkConfig] | None:
        with self.lock:
            return self.applied[-1] if self.applied else None


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    waiting.wait_until(predicate, timeout, what, interval=0.01)


def put_subnet(
    backend: MemoryBackend, sid: str, cidr: str, gw: str, region: str = "no-region"
) -> None:
    data = {"network_id": NET, "cidr": cidr, "gateway_ip": gw, "host_routes": [], "dns_servers": []}
    backend.put(keys.subnet_key(region, sid), json.dumps(data).encode())


def add_port(
    client: ResourceClient,
    port_id: str,
    ip: str,
    host: str = HOST,
    namespace: str = "openstack",
) -> None:
    resource = parse_resource({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": keys.endpoint_name(host, "vm-" + port_id, port_id),
            "namespace": namespace,
            "annotations": {"openstack.projectcalico.org/network-id": NET},
        },
        "spec": {
            "orchestrator": "openstack", "workload": "vm-" + port_id, "node": host,
            "endpoint": port_id, "interfaceName": keys.interface_name(port_id),
            "mac": "fa:16:3e:00:00:01", "ipNetworks": [f"{ip}/32"],
        },
    })  # fmt: skip
    client.apply(resource)


class Running:
    def __init__(self, agent: DhcpAgent) -> None:
        self.agent = agent
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.agent.run()

    def stop(self) -> int | None:
        self.agent.stop()
        self.thread.join(5)
        return self.code


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[MemoryBackend, ResourceClient, RecordingManager, Any]]:
    backend = MemoryBackend()
    client = ResourceClient(backend)
    manager = RecordingManager()
    runs: list[Running] = []

    def start(region: str | None = None, host: str = HOST) -> DhcpAgent:
        agent = DhcpAgent(
            backend, host, region, manager, RenderOptions(str(tmp_path)),
            debounce=0.02, check_interval=0.2, retry_interval=0.05,
        )  # fmt: skip
        runs.append(Running(agent))
        return agent

    yield backend, client, manager, start
    for run in runs:
        run.stop()


def taps(manager: RecordingManager) -> tuple[str, ...] | None:
    last = manager.last()
    if last is None or NET not in last:
        return None
    return last[NET].taps


def test_serves_this_hosts_ports_and_follows_changes(env: Any) -> None:
    backend, client, manager, start = env
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1")
    add_port(client, "port-a", "198.18.0.5")
    add_port(client, "port-x", "198.18.0.9", host="compute-2")  # not this host's
    start()
    wait_for(lambda: taps(manager) == ("tapport-a",), "the first port")
    assert manager.adopted
    add_port(client, "port-b", "198.18.0.6")
    wait_for(lambda: taps(manager) == ("tapport-a", "tapport-b"), "a second port")
    last = manager.last()
    assert last is not None and "198.18.0.6" in last[NET].hosts
    client.delete(WorkloadEndpoint, keys.endpoint_name(HOST, "vm-port-a", "port-a"), "openstack")
    wait_for(lambda: taps(manager) == ("tapport-b",), "a port's removal")
    backend.delete(keys.subnet_key("no-region", "s4"))
    wait_for(lambda: manager.last() == {}, "the subnet's removal")


def test_invalid_subnet_data_counts_as_absent(env: Any) -> None:
    backend, client, manager, start = env
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1")
    add_port(client, "port-a", "198.18.0.5")
    start()
    wait_for(lambda: taps(manager) == ("tapport-a",), "the port")
    backend.put(keys.subnet_key("no-region", "s4"), b"{not json")
    wait_for(lambda: manager.last() == {}, "the subnet to be dropped")
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1")
    wait_for(lambda: taps(manager) == ("tapport-a",), "the subnet to be back")


def test_region_selects_namespace_and_subnet_tree(env: Any) -> None:
    backend, client, manager, start = env
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1")  # no-region: not ours
    add_port(client, "port-a", "198.18.0.5")  # namespace openstack: not ours
    start(region="east")
    wait_for(lambda: manager.last() is not None, "a first apply")
    assert manager.last() == {}
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1", region="region-east")
    add_port(client, "port-b", "198.18.0.6", namespace="openstack-region-east")
    wait_for(lambda: taps(manager) == ("tapport-b",), "the region's port")


def test_endpoint_prefix_is_this_hosts_openstack_endpoints() -> None:
    prefix = "/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/"
    assert endpoint_prefix("openstack", "compute-1") == prefix + "compute--1-openstack-"


def test_failed_apply_is_retried_and_clean_stop(env: Any) -> None:
    backend, client, manager, start = env
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1")
    add_port(client, "port-a", "198.18.0.5")
    manager.fail = True
    agent = start()
    wait_for(lambda: len(manager.applied) >= 3, "retries after a failed apply", timeout=2)
    manager.fail = False
    agent.stop()
    wait_for(lambda: manager.stopped, "stop_all on a clean stop")


class FakeMtus:
    """An MTU watcher the test drives."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.mtus: dict[str, int] = {}
        self.running = False

    def get(self) -> dict[str, int]:
        return dict(self.mtus)

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


def test_a_taps_mtu_reaches_its_ports_options(tmp_path: Path) -> None:
    backend = MemoryBackend()
    put_subnet(backend, "s4", "198.18.0.0/24", "198.18.0.1")
    add_port(ResourceClient(backend), "port-a", "198.18.0.5")
    manager = RecordingManager()
    watchers: list[FakeMtus] = []

    def watcher(on_change: Callable[[], None]) -> FakeMtus:
        watchers.append(FakeMtus(on_change))
        return watchers[-1]

    agent = DhcpAgent(
        backend, HOST, None, manager, RenderOptions(str(tmp_path)),
        debounce=0.02, check_interval=60, tap_mtus=watcher,
    )  # fmt: skip
    run = Running(agent)
    try:
        wait_for(lambda: taps(manager) == ("tapport-a",), "the port, its tap not there yet")
        (mtus,) = watchers
        assert mtus.running
        assert "mtu" not in manager.applied[-1][NET].opts
        mtus.mtus = {"tapport-a": 1450}
        mtus.on_change()  # not the periodic check (60 s): the change itself re-renders
        wait_for(lambda: "tag:port-tapport-a,option:mtu,1450\n" in manager.applied[-1][NET].opts,
                 "the tap's MTU")  # fmt: skip
    finally:
        assert run.stop() == 0
    assert not mtus.running


def test_nothing_is_applied_before_the_first_snapshots(tmp_path: Path) -> None:
    manager = RecordingManager()
    agent = DhcpAgent(MemoryBackend(), HOST, None, manager, RenderOptions(str(tmp_path)))
    assert agent.reconcile() is True
    assert manager.applied == []
