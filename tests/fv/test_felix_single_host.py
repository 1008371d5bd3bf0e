"""One Felix host, real workloads, real packets: routes, proxy ARP/NDP, policy, restart."""

from __future__ import annotations

import pytest

from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.fv


def test_workloads_reach_each_other_and_policy_applies(cluster: Cluster) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a", app="client")
    cluster.add_endpoint(host, b, "b", app="server")
    serve(cluster.ns, b.netns, "198.19.0.2", 8080)
    serve(cluster.ns, b.netns, "2001:db8:100::2", 8080)
    host.start()
    wait_until(lambda: ping(cluster.ns, a.netns, "198.19.0.2"), what="IPv4 ping a->b")
    wait_until(lambda: ping(cluster.ns, a.netns, "2001:db8:100::2"), what="IPv6 ping a->b")
    assert connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080)
    assert connects(cluster.ns, a.netns, "udp", "2001:db8:100::2", 8080)

    # Only TCP 8080 from app=client may reach app=server.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "server-ingress"},
        "spec": {"selector": "app == 'server'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"}, "destination": {"ports": [8080]}},
        ]},
    })  # fmt: skip
    wait_until(lambda: not ping(cluster.ns, a.netns, "198.19.0.2"), what="ping blocked")
    assert connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080)
    assert connects(cluster.ns, a.netns, "tcp", "2001:db8:100::2", 8080)
    assert not connects(cluster.ns, a.netns, "udp", "198.19.0.2", 8080)
    assert ping(cluster.ns, b.netns, "198.19.0.1")  # b's egress and a's ingress are open
