"""Workload interfaces coming and going under a live Felix: a pod's veth recreated with the
same name (new ifindex, kernel defaults for its sysctls, no routes) is fully reprogrammed;
established flows survive a policy change that denies new connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.testing.workloads import HOST_SIDE_MAC, IPV6_GATEWAY, Workload, connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until
from .probes import Stream, echo_server

pytestmark = pytest.mark.fv


def rewire(cluster: Cluster, host: FelixHost, wl: Workload) -> None:
    """Recreate `wl`'s veth (same names, addresses and MAC), as a CNI DEL + ADD would."""
    host.exec(["ip", "link", "del", wl.host_iface])
    peer = ["peer", "name", "eth0", "netns", wl.netns]
    host.exec(["ip", "link", "add", wl.host_iface, "address", HOST_SIDE_MAC, "type", "veth", *peer])
    host.exec(["sysctl", "-qw", f"net.ipv6.conf.{wl.host_iface}.accept_dad=0"])
    run = cluster.ns.exec
    run(wl.netns, ["ip", "link", "set", "eth0", "address", wl.mac])
    host.exec(["ip", "link", "set", wl.host_iface, "up"])
    run(wl.netns, ["ip", "link", "set", "eth0", "up"])
    run(wl.netns, ["ip", "addr", "add", f"{wl.ipv4}/32", "dev", "eth0"])
    run(wl.netns, ["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"])
    run(wl.netns, ["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"])
    run(wl.netns, ["ip", "-6", "addr", "add", f"{wl.ipv6}/128", "dev", "eth0", "nodad"])
    run(wl.netns, ["ip", "-6", "route", "add", "default", "via", IPV6_GATEWAY, "dev", "eth0"])


def test_recreated_workload_interface_is_reprogrammed(cluster: Cluster) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a")
    cluster.add_endpoint(host, b, "b")
    serve(cluster.ns, b.netns, "198.19.0.2", 8080)
    host.start()
    host.wait_ready()
    wait_until(lambda: ping(cluster.ns, a.netns, "198.19.0.2"), what="a->b")
    routes = host.routes(4), host.routes(6)

    for round_ in range(2):
        rewire(cluster, host, b)
        wait_until(
            lambda: ping(cluster.ns, a.netns, "198.19.0.2"), what=f"v4 after rewire {round_}"
        )
        wait_until(lambda: ping(cluster.ns, a.netns, "2001:db8:100::2"), what="v6 after rewire")
        assert ping(cluster.ns, b.netns, "198.19.0.1")  # b's own gateway (proxy ARP) works
        assert connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080)
        assert (host.routes(4), host.routes(6)) == routes
        sysctl = host.exec(["sysctl", "-n", "net.ipv4.conf.cali1b.proxy_arp"]).stdout.strip()
        assert sysctl == "1"
        neigh = host.exec(["ip", "neigh", "show", "dev", "cali1b", "nud", "permanent"]).stdout
        assert b.mac in neigh


def test_established_flow_survives_policy_that_denies_new_connections(
    cluster: Cluster, tmp_path: Path
) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", None)
    b = host.add_workload("cali1b", "198.19.0.2", None)
    cluster.add_endpoint(host, a, "a")
    cluster.add_endpoint(host, b, "b", role="server")
    echo_server(cluster.ns, b.netns, "198.19.0.2", 7000)
    host.start()
    host.wait_ready()
    wait_until(lambda: ping(cluster.ns, a.netns, "198.19.0.2"), what="a->b")
    stream = Stream(cluster.ns, a.netns, "198.19.0.2", 7000, tmp_path / "s.json", 0.05)
    stream.progress(10)
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "deny-all-in"},
        "spec": {"selector": "role == 'server'", "ingress": [{"action": "Deny"}]},
    })  # fmt: skip
    wait_until(lambda: not ping(cluster.ns, a.netns, "198.19.0.2"), what="policy applied")
    assert not connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 7000)
    stream.progress(20)
    flow = stream.read()
    assert flow["fail"] == 0 and flow["reconnects"] == 1, flow
