"""Host endpoints: a HostEndpoint on the uplink (eth1) with no policy shuts the host except
its failsafe ports; a GlobalNetworkPolicy opens more; forwarded traffic is policed only by
applyOnForward policies."""

from __future__ import annotations

import json

import pytest

from calico.model.endpoints import HostEndpoint
from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.fv
HOST_V4, HOST_V6 = "198.18.255.1", "2001:db8:ff::1"
UP_V4, UP_V6 = "198.18.255.2", "2001:db8:ff::2"


def static_neighbours(
    cluster: Cluster, ns: str, dev: str, peer_ns: str, peer_dev: str, peer_ip: str
) -> None:
    mac = json.loads(cluster.ns.exec(peer_ns, ["ip", "-j", "link", "show", peer_dev]).stdout)[0]
    args = ["ip", "-6", "neigh", "replace", peer_ip, "lladdr", mac["address"], "dev", dev]
    cluster.ns.exec(ns, [*args, "nud", "permanent"])


def test_host_endpoint_failsafes_policy_and_forwarding(cluster: Cluster) -> None:
    host = cluster.host("h1")
    up = host.upstream
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    cluster.add_endpoint(host, a, "a")
    # The upstream routes the workload range via the host, so forwarded traffic exists.
    cluster.ns.exec(up, ["ip", "route", "add", "198.19.0.0/16", "via", HOST_V4])
    cluster.ns.exec(up, ["ip", "-6", "route", "add", "2001:db8:100::/48", "via", HOST_V6])
    # Like Go Felix, a host endpoint does not exempt IPv6 neighbour discovery from policy:
    # static neighbour entries keep the IPv6 checks about ports, not about NDP.
    static_neighbours(cluster, host.netns, "eth1", up, "eth0", UP_V6)
    static_neighbours(cluster, up, "eth0", host.netns, "eth1", HOST_V6)
    for addr in (HOST_V4, HOST_V6):
        serve(cluster.ns, host.netns, addr, 22)  # a failsafe port (ssh)
        serve(cluster.ns, host.netns, addr, 8080)
    for addr in (UP_V4, UP_V6):
        serve(cluster.ns, up, addr, 2379)  # an outbound failsafe port (etcd)
        serve(cluster.ns, up, addr, 8081)
    for addr in ("198.19.0.1", "2001:db8:100::1"):
        serve(cluster.ns, a.netns, addr, 7070)
        serve(cluster.ns, a.netns, addr, 7071)
    host.start()
    host.wait_ready()
    wait_until(lambda: connects(cluster.ns, up, "tcp", HOST_V4, 8080), what="host reachable")
    assert connects(cluster.ns, up, "tcp", "198.19.0.1", 7070)

    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-eth1", "labels": {"hep": "uplink"}},
        "spec": {"node": "h1", "interfaceName": "eth1", "expectedIPs": [HOST_V4, HOST_V6]},
    })  # fmt: skip
    wait_until(lambda: not ping(cluster.ns, up, HOST_V4), what="host endpoint default deny")
    for addr in (HOST_V4, HOST_V6):
        assert connects(cluster.ns, up, "tcp", addr, 22), f"failsafe 22 on {addr}"
        assert not connects(cluster.ns, up, "tcp", addr, 8080)
    assert not ping(cluster.ns, up, HOST_V6)
    for addr in (UP_V4, UP_V6):  # traffic from the host: failsafe out only
        assert connects(cluster.ns, host.netns, "tcp", addr, 2379)
        assert not connects(cluster.ns, host.netns, "tcp", addr, 8081)
    # Forwarded traffic is not policed while no applyOnForward policy applies.
    assert connects(cluster.ns, up, "tcp", "198.19.0.1", 7071)
    assert ping(cluster.ns, up, "2001:db8:100::1")

    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "uplink-in"},
        "spec": {"selector": "hep == 'uplink'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}},
        ]},
    })  # fmt: skip
    wait_until(lambda: connects(cluster.ns, up, "tcp", HOST_V4, 8080), what="8080 allowed")
    assert connects(cluster.ns, up, "tcp", HOST_V6, 8080)
    assert not ping(cluster.ns, up, HOST_V4)
    assert connects(cluster.ns, up, "tcp", "198.19.0.1", 7071)  # not applyOnForward

    # An applyOnForward policy polices forwarded traffic through the uplink too.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "uplink-forward"},
        "spec": {"selector": "hep == 'uplink'", "applyOnForward": True, "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [7070]}},
        ]},
    })  # fmt: skip
    wait_until(
        lambda: not connects(cluster.ns, up, "tcp", "198.19.0.1", 7071), what="forward policed"
    )
    assert connects(cluster.ns, up, "tcp", "198.19.0.1", 7070)
    assert not ping(cluster.ns, up, "198.19.0.1")
    assert not connects(cluster.ns, up, "tcp", "2001:db8:100::1", 7071)
    assert connects(cluster.ns, up, "tcp", "2001:db8:100::1", 7070)
    assert connects(cluster.ns, up, "tcp", HOST_V4, 8080)  # host ingress still allowed
    # Workload-originated traffic leaving through the uplink: the HEP has no egress
    # applyOnForward policy, so that direction is still allowed.
    serve(cluster.ns, up, UP_V4, 9090)
    wait_until(lambda: connects(cluster.ns, a.netns, "tcp", UP_V4, 9090), what="wl -> upstream")

    # Deleting the host endpoint opens the host again.
    cluster.delete(HostEndpoint, "h1-eth1")
    wait_until(lambda: ping(cluster.ns, up, HOST_V4), what="host endpoint removed")
    assert connects(cluster.ns, up, "tcp", "198.19.0.1", 7071)


def test_host_endpoint_found_by_expected_ip(cluster: Cluster) -> None:
    """No interfaceName: the host endpoint is the interface that carries an expected IP,
    and follows the address when it moves."""
    host = cluster.host("h1")
    up = host.upstream
    serve(cluster.ns, host.netns, HOST_V4, 8080)
    host.start()
    host.wait_ready()
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-uplink"},
        "spec": {"node": "h1", "expectedIPs": [HOST_V4]},
    })  # fmt: skip
    wait_until(lambda: not connects(cluster.ns, up, "tcp", HOST_V4, 8080), what="hep resolved")
    assert host.has_chain("cali-fh-eth1")
    # The address leaves eth1: eth1 is no longer a host endpoint.
    host.exec(["ip", "addr", "del", f"{HOST_V4}/30", "dev", "eth1"])
    wait_until(lambda: not host.has_chain("cali-fh-eth1"), what="hep unresolved")
    host.exec(["ip", "addr", "add", f"{HOST_V4}/30", "dev", "eth1"])
    wait_until(lambda: host.has_chain("cali-fh-eth1"), what="hep resolved again")
    # Another host's endpoint with the same address is not ours.
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-uplink"},
        "spec": {"node": "h2", "expectedIPs": [HOST_V4]},
    })  # fmt: skip
    wait_until(lambda: not host.has_chain("cali-fh-eth1"), what="other node's hep ignored")
    host.exec(["ip", "route", "replace", "default", "via", UP_V4])
    assert connects(cluster.ns, up, "tcp", HOST_V4, 8080)


def test_untracked_host_endpoint_policy(cluster: Cluster) -> None:
    """doNotTrack policy is applied in the raw table: allowed packets skip conntrack (so
    both directions need a rule) and are accepted without normal policy."""
    host = cluster.host("h1")
    up = host.upstream
    serve(cluster.ns, host.netns, HOST_V4, 8080)
    host.start()
    host.wait_ready()
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-eth1", "labels": {"hep": "uplink"}},
        "spec": {"node": "h1", "interfaceName": "eth1"},
    })  # fmt: skip
    wait_until(lambda: not connects(cluster.ns, up, "tcp", HOST_V4, 8080), what="default deny")
    # A connection made before the host endpoint was programmed stays tracked (TIME_WAIT).
    host.exec(["conntrack", "-F"])
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "untracked-8080"},
        "spec": {"selector": "hep == 'uplink'", "doNotTrack": True, "applyOnForward": True,
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}],
            "egress": [{"action": "Allow", "protocol": "TCP", "source": {"ports": [8080]}}]},
    })  # fmt: skip
    wait_until(lambda: connects(cluster.ns, up, "tcp", HOST_V4, 8080), what="untracked allow")
    tracked = host.exec(["cat", "/proc/net/nf_conntrack"]).stdout  # this namespace's table
    assert "dport=8080" not in tracked and "sport=8080" not in tracked, tracked
    notrack = [
        ln for ln in host.iptables_save("raw", counters=True).splitlines() if "-j NOTRACK" in ln
    ]
    assert notrack and all(not ln.startswith("[0:") for ln in notrack), notrack
    assert not ping(cluster.ns, up, HOST_V4)  # everything else: still the normal deny
