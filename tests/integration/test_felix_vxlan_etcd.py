"""Felix's calc side against a real etcd: Nodes, a VXLAN pool and IPAM blocks written to the
datastore come out as VTEP and route messages (Felix's own syncers, calc thread and graph
adapter; a recording dataplane instead of the kernel)."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from calico.calc import messages as m
from calico.calc.graph import CalcGraph
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.felix import daemon
from calico.felix.calc_feed import CalcFeed
from calico.felix.health import HealthAggregator
from calico.felix.metrics import FelixMetrics
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest
from calico.ipam.keys import block_key, blocks_prefix
from calico.model import parse_resource
from calico.model.network import Node
from calico.model.vxlan import vtep_mac
from calico.testing import waiting

pytestmark = pytest.mark.integration
HOST = "h1"


def resource(kind: str, name: str, spec: dict[str, Any]) -> Any:
    return parse_resource(
        {"apiVersion": "projectcalico.org/v3", "kind": kind,
         "metadata": {"name": name}, "spec": spec}
    )  # fmt: skip


def node(name: str, host: str, tunnel: str) -> Node:
    node = resource("Node", name, {"bgp": {"ipv4Address": host}, "ipv4VXLANTunnelAddr": tunnel})
    assert isinstance(node, Node)
    return node


class Dataplane:
    """Records batches (from the calc thread) and the state they build."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[list[m.Message]] = []
        self.vteps: dict[str, m.VTEPUpdate] = {}
        self.routes: dict[str, m.RouteUpdate] = {}

    def __call__(self, batch: Sequence[m.Message]) -> None:
        with self.lock:
            self.batches.append(list(batch))
            for msg in batch:
                if isinstance(msg, m.VTEPUpdate):
                    self.vteps[msg.node] = msg
                elif isinstance(msg, m.VTEPRemove):
                    del self.vteps[msg.node]
                elif isinstance(msg, m.RouteUpdate):
                    self.routes[msg.dst] = msg
                elif isinstance(msg, m.RouteRemove):
                    del self.routes[msg.dst]

    def route(self, dst: str) -> tuple[m.RouteType, str, str] | None:
        with self.lock:
            route = self.routes.get(dst)
        return None if route is None else (route.type, route.next_hop, route.node)


def start(backend: EtcdBackend) -> tuple[Dataplane, CalcFeed, list[Any]]:
    """Felix's calc side: its syncers, calc thread and graph adapter, without a kernel."""
    dp, health = Dataplane(), HealthAggregator()
    health.register("CalculationGraph", live_timeout=None, reports_ready=True)
    no_config = lambda key, resource: None  # noqa: E731 (no FelixConfiguration here)
    adapter = daemon._GraphAdapter(CalcGraph(HOST, dp), FelixMetrics(), health, no_config)
    feed = CalcFeed(adapter)
    syncers = daemon.calc_syncers(backend, feed)
    feed.start()
    for syncer in syncers:
        syncer.start()
    return dp, feed, syncers


def test_felix_resolves_vxlan_routes_from_nodes_and_blocks_in_etcd(
    backend: EtcdBackend, caplog: pytest.LogCaptureFixture
) -> None:
    client = ResourceClient(backend)
    client.create(resource("IPPool", "vx", {"cidr": "198.19.0.0/16", "vxlanMode": "Always"}))
    for n in (node(HOST, "198.18.0.1/24", "198.19.0.1"), node("h2", "198.18.0.2/24", "198.19.1.1")):
        client.create(n)
    ipam = IPAMClient(backend)
    blocks = {}
    for host in (HOST, "h2"):
        address = ipam.auto_assign(AutoAssignRequest(f"pod-{host}", host)).ipv4[0]
        blocks[host] = str(ipaddress.ip_interface(address).network)
    backend.put(blocks_prefix(4) + "junk", b"not a block key")
    backend.put(block_key("198.19.250.0/26"), b"\xff not json")  # garbage must not stop Felix
    caplog.set_level(logging.WARNING)

    dp, feed, syncers = start(backend)
    try:
        waiting.wait_until(lambda: any(isinstance(b[-1], m.InSync) for b in dp.batches), 10)
        # In sync only with the blocks in: the routes came out no later than InSync.
        with dp.lock:
            upto = next(i for i, b in enumerate(dp.batches) if isinstance(b[-1], m.InSync))
            early = {msg.dst for b in dp.batches[: upto + 1] for msg in b if hasattr(msg, "dst")}
        assert early == {blocks[HOST], blocks["h2"]}
        assert dp.route(blocks[HOST]) == (m.RouteType.BLACKHOLE, "", HOST)
        assert dp.route(blocks["h2"]) == (m.RouteType.VXLAN, "198.19.1.1", "h2")
        assert dp.vteps["h2"] == m.VTEPUpdate(
            "h2", 4, "198.19.1.1", vtep_mac("h2", 4), "198.18.0.2"
        )
        assert set(dp.vteps) == {HOST, "h2"}
        warnings = " ".join(r.getMessage() for r in caplog.records)
        assert "junk" in warnings and "198.19.250.0-26" in warnings

        # Live: h2's block moves to h3, a new node on another subnet.
        client.create(node("h3", "198.18.7.3/24", "198.19.2.1"))
        stored = backend.get(block_key(blocks["h2"]))
        assert stored is not None
        raw = json.loads(stored.value)
        backend.put(block_key(blocks["h2"]), json.dumps({**raw, "affinity": "host:h3"}).encode())
        waiting.wait_until(
            lambda: dp.route(blocks["h2"]) == (m.RouteType.VXLAN, "198.19.2.1", "h3"), 10
        )

        # h3 goes: its route first, then its VTEP.
        client.delete(Node, "h3")
        waiting.wait_until(lambda: "h3" not in dp.vteps, 10)
        assert dp.batches[-1] == [m.RouteRemove(blocks["h2"]), m.VTEPRemove("h3", 4)]
        assert feed.is_alive() and all(s.is_alive() for s in syncers)
    finally:
        feed.stop()
        for syncer in syncers:
            syncer.stop()
