"""DefaultEndpointToHostAction: workload -> its own host is dropped by default (after the
workload's egress policy), accepted with Accept; set from the environment or the datastore."""

from __future__ import annotations

import pytest

from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.fv
HOST_V4, HOST_V6 = "198.18.255.1", "2001:db8:ff::1"  # the host's uplink (eth1) addresses


def test_workload_to_host_dropped_by_default_accepted_when_configured(cluster: Cluster) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a", role="a")
    cluster.add_endpoint(host, b, "b", role="b")
    serve(cluster.ns, host.netns, HOST_V4, 5000)
    serve(cluster.ns, host.netns, HOST_V6, 5000)
    host.start()
    host.wait_ready()
    wait_until(lambda: ping(cluster.ns, a.netns, "198.19.0.2"), what="a->b (policy allows)")
    for addr in (HOST_V4, HOST_V6):
        assert not ping(cluster.ns, a.netns, addr)
        assert not connects(cluster.ns, a.netns, "tcp", addr, 5000)
    # The host still reaches the workload (host -> workload is not policed).
    assert ping(cluster.ns, host.netns, "198.19.0.1")

    host.kill()
    host.start(FELIX_DEFAULTENDPOINTTOHOSTACTION="Accept")
    host.wait_ready()
    for addr in (HOST_V4, HOST_V6):
        assert ping(cluster.ns, a.netns, addr)
        assert connects(cluster.ns, a.netns, "tcp", addr, 5000)

    # Accept comes after the workload's egress policy: a policy denying egress still wins.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "a-egress"},
        "spec": {"selector": "role == 'a'", "types": ["Egress"], "egress": [
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [5000]}},
            {"action": "Allow"},
        ]},
    })  # fmt: skip
    wait_until(lambda: not connects(cluster.ns, a.netns, "tcp", HOST_V4, 5000), what="denied")
    assert not connects(cluster.ns, a.netns, "tcp", HOST_V6, 5000)
    assert ping(cluster.ns, a.netns, HOST_V4)
    assert connects(cluster.ns, b.netns, "tcp", HOST_V4, 5000)

    # The same setting from the datastore: Felix restarts itself to apply it.
    host.kill()
    host.start()
    host.wait_ready()
    assert not ping(cluster.ns, b.netns, HOST_V4)
    cluster.apply({
        "kind": "FelixConfiguration", "metadata": {"name": "default"},
        "spec": {"defaultEndpointToHostAction": "Accept"},
    })  # fmt: skip
    wait_until(lambda: ping(cluster.ns, b.netns, HOST_V4), what="datastore Accept applied")
    assert connects(cluster.ns, b.netns, "tcp", HOST_V6, 5000)
