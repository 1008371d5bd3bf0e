"""Datastore outage: with etcd down the dataplane keeps forwarding (and keeps repairing
itself); when etcd is back Felix resyncs and applies what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.model.endpoints import WorkloadEndpoint
from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, wait_until
from .probes import Prober, Stream, echo_server

pytestmark = pytest.mark.fv


def test_dataplane_survives_etcd_outage_and_resyncs(cluster: Cluster, tmp_path: Path) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    c = host.add_workload("cali1c", "198.19.0.3", None)
    cluster.add_endpoint(host, a, "a", role="client")
    cluster.add_endpoint(host, b, "b", role="server")
    wep_c = cluster.add_endpoint(host, c, "c", role="other")
    echo_server(cluster.ns, b.netns, "198.19.0.2", 7000)
    serve(cluster.ns, b.netns, "198.19.0.2", 8080)
    host.start()
    host.wait_ready()
    wait_until(lambda: connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080), what="a->b")
    stream = Stream(cluster.ns, a.netns, "198.19.0.2", 7000, tmp_path / "stream.json", 0.05)
    prober = Prober(cluster.ns, a.netns, "198.19.0.2", 8080, tmp_path / "probe.json", 0.1)
    stream.progress(10)

    cluster.etcd.stop()
    wait_until(
        lambda: "status report failed" in host.log_since_start(), what="Felix notices the outage"
    )
    # Felix stays up, the dataplane keeps working, and still repairs tampering.
    host.exec(["ip", "route", "del", "198.19.0.3/32", "dev", "cali1c"])
    wait_until(lambda: "198.19.0.3 dev cali1c" in host.routes(4), 8.0, "route repaired")
    stream.progress(40)
    prober.progress(10)
    assert ping(cluster.ns, a.netns, "2001:db8:100::2")
    assert host.proc is not None and host.proc.poll() is None, host.log_tail()
    during = prober.read()
    assert during["tcp_fail"] == 0 and during["icmp_fail"] == 0, during

    cluster.etcd.restart()
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "server"},
        "spec": {"selector": "role == 'server'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [7000, 8080]}},
        ]},
    })  # fmt: skip
    cluster.delete(WorkloadEndpoint, wep_c.name, "default")
    wait_until(lambda: not ping(cluster.ns, a.netns, "198.19.0.2"), 30.0, "policy applied")
    wait_until(lambda: not host.has_chain("cali-tw-cali1c"), 10.0, "deleted endpoint removed")
    assert "198.19.0.3" not in host.routes(4)
    stream.progress(10)
    prober.progress(3)
    flow, probes = stream.read(), prober.read()
    assert flow["fail"] == 0 and flow["reconnects"] == 1 and flow["max_gap"] < 0.5, flow
    assert probes["tcp_fail"] == 0, probes  # (ICMP is denied by the new policy)
    assert host.proc.poll() is None
