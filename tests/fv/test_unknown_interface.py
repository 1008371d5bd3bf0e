"""An interface with the workload prefix but no WorkloadEndpoint is dropped ("Unknown
interface"), even when the CNI side (route, proxy ARP) is already in place; once its
WorkloadEndpoint appears, it flows."""

from __future__ import annotations

import re

import pytest

from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until

pytestmark = pytest.mark.fv


def unknown_drops(host: FelixHost, chain: str) -> int:
    """Packets counted by the "Unknown interface" rules of a dispatch chain tree."""
    total = 0
    for line in host.iptables_save(counters=True).splitlines():
        if f"-A {chain}" in line and "Unknown interface" in line:
            found = re.match(r"^\[(\d+):", line)
            total += int(found.group(1)) if found else 0
    return total


def test_unknown_workload_interface_is_dropped_until_its_endpoint_exists(
    cluster: Cluster,
) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    x = host.add_workload("calix", "198.19.0.9", "2001:db8:100::9")
    cluster.add_endpoint(host, a, "a")
    serve(cluster.ns, a.netns, "198.19.0.1", 8080)
    serve(cluster.ns, x.netns, "198.19.0.9", 8080)
    host.start()
    host.wait_ready()
    wait_until(lambda: ping(cluster.ns, host.netns, "198.19.0.1"), what="a programmed")

    # What the CNI plugin does before the endpoint is written: route and proxy ARP. (Felix
    # would remove the "external" route after its grace period; the test is quicker.)
    host.exec(["ip", "route", "add", "198.19.0.9/32", "dev", "calix", "scope", "link"])
    host.exec(["sysctl", "-qw", "net.ipv4.conf.calix.proxy_arp=1"])
    host.exec(["sysctl", "-qw", "net.ipv4.neigh.calix.proxy_delay=0"])
    before = unknown_drops(host, "cali-from-wl-dispatch")
    assert not ping(cluster.ns, x.netns, "198.19.0.1")
    assert not connects(cluster.ns, x.netns, "tcp", "198.19.0.1", 8080)
    assert not connects(cluster.ns, a.netns, "tcp", "198.19.0.9", 8080)  # to it: also dropped
    # The packets got as far as dispatch (routing and RPF are fine) and died there.
    assert unknown_drops(host, "cali-from-wl-dispatch") > before
    assert not ping(cluster.ns, host.netns, "198.19.0.9")  # even replies to the host
    assert unknown_drops(host, "cali-to-wl-dispatch") > 0

    cluster.add_endpoint(host, x, "x")
    wait_until(lambda: ping(cluster.ns, x.netns, "198.19.0.1"), what="x's traffic flows")
    assert connects(cluster.ns, x.netns, "tcp", "198.19.0.1", 8080)
    assert connects(cluster.ns, a.netns, "tcp", "198.19.0.9", 8080)
    assert ping(cluster.ns, x.netns, "2001:db8:100::1")
