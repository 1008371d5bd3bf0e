"""The syncer's updates split before the graph: FelixConfiguration to Felix, the rest to the
calculation graph."""

from __future__ import annotations

import threading
from typing import Any

from calico.calc import messages as m
from calico.calc.graph import CalcGraph
from calico.datastore.api import UpdateKind
from calico.datastore.resource_syncer import ResourceUpdate
from calico.felix import daemon
from calico.felix.config import build_config
from calico.felix.health import HealthAggregator
from calico.felix.metrics import FelixMetrics
from calico.model import parse_resource
from calico.model.keys import key_of
from calico.model.sync import SyncStatus


def _felix() -> daemon.Felix:
    felix = daemon.Felix.__new__(daemon.Felix)
    felix.environ = {"NODENAME": "h"}
    felix.local_file = {}
    felix.config = build_config(felix.environ)
    felix._datastore_specs = ({}, {})
    felix.exit_code = 0
    felix.stop_event = threading.Event()
    felix.metrics = FelixMetrics()
    return felix


def _update(kind: str, name: str, spec: dict[str, Any]) -> ResourceUpdate:
    resource = parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    return ResourceUpdate(UpdateKind.NEW, key_of(resource), resource, 1)


def test_felix_configuration_goes_to_felix_and_the_rest_to_the_graph() -> None:
    felix = _felix()
    batches: list[list[m.Message]] = []
    graph = CalcGraph("h", lambda b: batches.append(list(b)))
    adapter = daemon._GraphAdapter(graph, felix.metrics, HealthAggregator(), felix.on_config_update)
    graph.on_status(SyncStatus.IN_SYNC)
    other_node = _update("FelixConfiguration", "node.other", {"logSeverityScreen": "Debug"})
    pool = _update("IPPool", "p", {"cidr": "198.18.0.0/24"})
    adapter.on_resource_updates([other_node, pool])
    assert len(batches) == 1  # applied; out when the calc feed flushes
    adapter.flush()
    assert batches[1:] == [[m.IPAMPoolUpdate("p", m.IPAMPool("198.18.0.0/24", False))]]
    assert (felix.exit_code, felix.stop_event.is_set()) == (0, False)  # not this host's
    mine = _update("FelixConfiguration", "node.h", {"logSeverityScreen": "Debug"})
    adapter.on_resource_updates([mine])
    adapter.flush()
    assert len(batches) == 2  # nothing for the graph
    assert (felix.exit_code, felix.stop_event.is_set()) == (daemon._RESTART, True)


def test_cluster_gauges_count_what_the_syncer_reports() -> None:
    felix = _felix()
    graph = CalcGraph("h", lambda b: None)
    adapter = daemon._GraphAdapter(graph, felix.metrics, HealthAggregator(), felix.on_config_update)
    gnp = _update("GlobalNetworkPolicy", "p", {"selector": "all()"})
    nodes = [_update("Node", n, {}) for n in ("h", "other")]
    adapter.on_resource_updates([gnp, *nodes, nodes[0]])  # a repeat counts once
    value = felix.metrics.registry.get_sample_value
    assert value("felix_cluster_num_hosts") == 2
    assert value("felix_cluster_num_policies") == 1
    assert value("felix_cluster_num_workload_endpoints") == 0
    gone = ResourceUpdate(UpdateKind.DELETED, nodes[1].key, None, 2)
    adapter.on_resource_updates([gone])
    assert value("felix_cluster_num_hosts") == 1
