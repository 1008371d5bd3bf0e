"""Every reader of the datastore over garbage under every prefix: alive, lines per key.

The readers are the ones the components run: Felix's syncer and calculation graph (with its
fail-closed salvage of broken policies), the BGP agent's syncer and start-up listing, IPAM's
pool choice and calicoctl's `get` of every kind. `fail_closed` tells whether the workload the
broken policies select got a deny-all policy, not the allow-all profile alone.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from calico.bgp.agent import BGPAgent
from calico.calc.graph import CalcGraph
from calico.calc.messages import Action, ActivePolicyUpdate, Message, WorkloadEndpointUpdate
from calico.calc.salvage import salvage_policy
from calico.ctl.main import cli
from calico.datastore.api import Backend, SyncStatus
from calico.datastore.client import ResourceClient
from calico.datastore.resource_syncer import ResourceUpdate, resource_syncer
from calico.felix.daemon import WATCHED_KINDS
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest
from calico.model import parse_resource
from calico.model.registry import KINDS
from calico.testing.garbage import (
    NAMESPACE,
    Garbage,
    LineCounter,
    Reading,
    garbage,
    read_with,
    write,
)
from calico.testing.waiting import wait_until

HOST = "garbagehost"
ENDPOINT = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "WorkloadEndpoint",
    "metadata": {"name": f"{HOST}-cni-c1-eth0", "namespace": NAMESPACE, "labels": {"a": "b"}},
    "spec": {
        "node": HOST, "orchestrator": "cni", "containerID": "c1", "endpoint": "eth0",
        "interfaceName": "caligarbage", "ipNetworks": ["198.18.0.5/32"],
        "profiles": ["projectcalico-default-allow"],
    },
}  # fmt: skip
POOL = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "garbage-survey-pool"},
    "spec": {"cidr": "198.18.64.0/24"},
}


@dataclass(frozen=True, slots=True)
class Survey:
    items: list[Garbage]
    readings: list[Reading]
    fail_closed: bool


class _Sink:
    def __init__(self, graph: CalcGraph | None = None) -> None:
        self.graph = graph
        self.in_sync = threading.Event()

    def on_status(self, status: SyncStatus) -> None:
        if self.graph is not None:
            self.graph.on_status(status)
        if status is SyncStatus.IN_SYNC:
            self.in_sync.set()

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        if self.graph is not None:
            self.graph.on_updates([(u.key, u.resource) for u in updates])


def _sync(backend: Backend, sink: _Sink, kinds: Sequence[type], name: str) -> None:
    salvage = salvage_policy if sink.graph is not None else None
    syncer = resource_syncer(backend, kinds, sink, name=name, salvage=salvage)
    syncer.start()
    try:
        if not sink.in_sync.wait(20):
            raise RuntimeError(f"{name} never got in sync")
    finally:
        syncer.stop()


def _denied(messages: list[Message]) -> bool:
    """The endpoint's ingress goes through a deny-all stand-in for a broken policy."""
    deny_all = {
        m.id.name
        for m in messages
        if isinstance(m, ActivePolicyUpdate)
        and [r.action for r in m.policy.inbound_rules] == [Action.DENY]
    }
    endpoints = [m for m in messages if isinstance(m, WorkloadEndpointUpdate)]
    if not endpoints or not deny_all:
        return False
    tiers = endpoints[-1].endpoint.tiers
    return any(p.name in deny_all for t in tiers for p in t.ingress_policies)


def _calicoctl(endpoint: str, items: list[Garbage]) -> Reading:
    ctl = CliRunner(env={"ETCD_ENDPOINTS": endpoint, "ETCD_CA_CERT_FILE": ""})
    counter = LineCounter(items)
    failures: list[str] = []
    for kind in KINDS.values():
        args = ["get", kind.PLURAL, "-o", "yaml"] + (["-A"] if kind.NAMESPACED else [])
        result = ctl.invoke(cli, args)
        if result.exit_code != 0 or result.exception is not None:
            failures.append(f"{kind.PLURAL}: exit {result.exit_code} {result.exception!r}")
        for line in result.stderr.splitlines():
            counter.count(line)
    return counter.reading("calicoctl get", "; ".join(failures)[:300])


def survey(backend: Backend, endpoint: str) -> Survey:
    """Write the garbage, then run every reader over it."""
    client = ResourceClient(backend)
    client.ensure_initialized()
    client.apply(parse_resource(ENDPOINT))
    client.apply(parse_resource(POOL))
    items = garbage()
    write(backend, items)
    messages: list[Message] = []
    felix = _Sink(CalcGraph(HOST, messages.extend))

    def bgp() -> None:
        with tempfile.TemporaryDirectory(prefix="garbage-bgp-") as run_dir:
            agent = BGPAgent(backend, HOST, Path(run_dir), debounce=0.0)
            agent.render_now()
            agent.start()
            try:
                wait_until(lambda: agent.renders > 0, 20, "the BGP agent's first render")
                if not agent.is_alive():
                    raise RuntimeError(f"BGP agent died: {agent.failure!r}")
            finally:
                agent.stop()

    def ipam() -> None:
        got = IPAMClient(backend).auto_assign(AutoAssignRequest("garbage-handle", HOST))
        if not got.ipv4:
            raise RuntimeError("no address assigned")

    def felix_reader() -> None:
        _sync(backend, felix, WATCHED_KINDS, "garbage-felix")

    readings = [
        read_with("felix syncer + calc graph", items, felix_reader),
        read_with("bgp agent", items, bgp),
        read_with("ipam auto-assign", items, ipam),
        _calicoctl(endpoint, items),
    ]
    return Survey(items, readings, _denied(messages))
