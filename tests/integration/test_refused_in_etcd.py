"""Refused values written to etcd by another tool are handled as invalid data (real etcd).

A policy with a refused match fails closed for the endpoints it selects; an IPPool with a
refused mode is reported (Felix's syncer, calicoctl, IPAM) and never used: no natOutgoing
pool for Felix, no addresses from IPAM, no BGP export.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner

from calico.bgp.agent import KINDS as BGP_KINDS
from calico.calc.graph import CalcGraph
from calico.calc.messages import (
    Action,
    ActivePolicyUpdate,
    IPAMPoolUpdate,
    Message,
    WorkloadEndpointUpdate,
)
from calico.calc.salvage import salvage_policy
from calico.ctl.main import cli
from calico.datastore.api import SyncStatus
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.datastore.resource_syncer import ResourceUpdate, resource_syncer
from calico.felix.daemon import WATCHED_KINDS
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest
from calico.model import parse_resource
from calico.model.keys import ResourceKey
from calico.model.network import IPPool
from calico.model.policy import GlobalNetworkPolicy
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration

HOST = "h1"


def doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


REFUSED_POLICY = doc(
    "GlobalNetworkPolicy",
    "allow-get",
    {
        "selector": "app == 'web'",
        "ingress": [{"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}}],
    },
)
REFUSED_POOL = doc("IPPool", "tunnelled", {"cidr": "198.19.0.0/24", "ipipMode": "Always"})
GOOD_POOL = doc("IPPool", "plain", {"cidr": "198.18.0.0/24", "natOutgoing": True})
WEB = doc(
    "WorkloadEndpoint",
    f"{HOST}-cni-c1-eth0",
    {
        "node": HOST,
        "orchestrator": "cni",
        "containerID": "c1",
        "endpoint": "eth0",
        "interfaceName": "cali1",
        "ipNetworks": ["198.18.0.5/32"],
        "profiles": ["open"],
    },
    namespace="default",
    labels={"app": "web"},
)
OPEN = doc("Profile", "open", {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})


def write_behind_validation(backend: EtcdBackend, data: dict[str, Any]) -> str:
    """Write a resource as another tool would: raw JSON, no calico-py validation."""
    kind = {"GlobalNetworkPolicy": GlobalNetworkPolicy, "IPPool": IPPool}[data["kind"]]
    key = ResourceKey(kind, data["metadata"]["name"]).path
    backend.put(key, json.dumps(data).encode())
    return key


class Recorder:
    def __init__(self, graph: CalcGraph) -> None:
        self.graph = graph
        self.in_sync = threading.Event()
        self.delivered: dict[str, object] = {}

    def on_status(self, status: SyncStatus) -> None:
        self.graph.on_status(status)
        if status is SyncStatus.IN_SYNC:
            self.in_sync.set()

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        for u in updates:
            self.delivered[u.key.path] = u.resource
        self.graph.on_updates([(u.key, u.resource) for u in updates])


def test_felix_fails_closed_on_a_refused_policy_and_ignores_a_refused_pool(
    backend: EtcdBackend, caplog: pytest.LogCaptureFixture
) -> None:
    client = ResourceClient(backend)
    for data in (WEB, OPEN, GOOD_POOL):
        client.create(parse_resource(data))
    policy_key = write_behind_validation(backend, REFUSED_POLICY)
    pool_key = write_behind_validation(backend, REFUSED_POOL)

    messages: list[Message] = []
    recorder = Recorder(CalcGraph(HOST, messages.extend))
    caplog.set_level(logging.WARNING)
    syncer = resource_syncer(
        backend, WATCHED_KINDS, recorder, name="test-felix", salvage=salvage_policy
    )
    syncer.start()
    try:
        assert recorder.in_sync.wait(10)
    finally:
        syncer.stop()

    # The policy is enforced as deny-all on the endpoint it selects, not dropped (which would
    # leave the allow-all profile) and not widened (the http match dropped).
    stand_in = recorder.delivered[policy_key]
    assert isinstance(stand_in, GlobalNetworkPolicy)
    policies = [m for m in messages if isinstance(m, ActivePolicyUpdate)]
    assert [p.id.name for p in policies] == ["allow-get"]
    assert [r.action for r in policies[0].policy.inbound_rules] == [Action.DENY]
    endpoint = [m for m in messages if isinstance(m, WorkloadEndpointUpdate)][-1]
    assert [p.name for t in endpoint.endpoint.tiers for p in t.ingress_policies] == ["allow-get"]

    # The pool with a refused mode never reaches the dataplane; one line says why.
    assert pool_key not in recorder.delivered
    pools = {m.id: m.pool for m in messages if isinstance(m, IPAMPoolUpdate)}
    assert set(pools) == {"plain"}
    lines = [r.getMessage() for r in caplog.records if pool_key in r.getMessage()]
    assert len(lines) == 1
    assert 'spec.ipipMode: "Always" is not supported by calico-py' in lines[0]


def test_bgp_agent_and_ipam_skip_a_refused_pool(
    backend: EtcdBackend, caplog: pytest.LogCaptureFixture
) -> None:
    ResourceClient(backend).create(parse_resource(GOOD_POOL))
    pool_key = write_behind_validation(backend, REFUSED_POOL)
    caplog.set_level(logging.WARNING)

    delivered: dict[str, object] = {}
    done = threading.Event()

    class Sink:
        def on_status(self, status: SyncStatus) -> None:
            if status is SyncStatus.IN_SYNC:
                done.set()

        def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
            delivered.update({u.key.path: u.resource for u in updates})

    syncer = resource_syncer(backend, BGP_KINDS, Sink(), name="test-bgp")
    syncer.start()
    try:
        assert done.wait(10)
    finally:
        syncer.stop()
    assert [k for k in delivered if "/ippools/" in k] == [ResourceKey(IPPool, "plain").path]

    # IPAM only ever hands out addresses from the valid pool, and says why it skipped one.
    ipam = IPAMClient(backend)
    for i in range(3):
        got = ipam.auto_assign(AutoAssignRequest(f"h{i}", HOST)).ipv4[0]
        assert got.startswith("198.18.0."), got
    assert any(pool_key in r.getMessage() for r in caplog.records if r.name.startswith("calico"))


def test_calicoctl_reports_a_refused_pool_and_shows_the_rest(
    etcd_server: EtcdServer, backend: EtcdBackend
) -> None:
    ResourceClient(backend).create(parse_resource(GOOD_POOL))
    write_behind_validation(backend, REFUSED_POOL)
    ctl = CliRunner(env={"ETCD_ENDPOINTS": etcd_server.endpoint, "ETCD_CA_CERT_FILE": ""})
    result = ctl.invoke(cli, ["get", "ippools"])
    assert result.exit_code == 0, result.output
    assert "plain" in result.stdout and "tunnelled" not in result.stdout
    assert "skipped invalid datastore entry" in result.stderr
    assert 'spec.ipipMode: "Always" is not supported by calico-py' in result.stderr
