"""Two Felix hosts side by side on one machine (own namespace, own CALICO_RUN_DIR): each
programs only its own node's endpoints, while both see the whole cluster for IP sets."""

from __future__ import annotations

import pytest

from calico.testing.workloads import ping

from .conftest import Cluster, FelixHost, wait_until
from .tracing import traced

pytestmark = pytest.mark.fv


def endpoint_chains(host: FelixHost) -> set[str]:
    return {
        ln.split()[0][1:]
        for ln in host.cali_lines("filter", 4)
        if ln.startswith((":cali-tw-", ":cali-fw-"))
    }


def ipset_members(host: FelixHost) -> set[str]:
    lines = host.exec(["ipset", "save"]).stdout.splitlines()
    return {ln.split()[2] for ln in lines if ln.startswith("add cali40s:")}


def test_two_hosts_program_only_their_own_endpoints(cluster: Cluster) -> None:
    h1, h2 = cluster.host("h1"), cluster.host("h2")
    a1 = h1.add_workload("cali1a", "198.19.1.1", "2001:db8:101::1")
    b1 = h1.add_workload("cali1b", "198.19.1.2", None)
    a2 = h2.add_workload("cali2a", "198.19.2.1", "2001:db8:102::1")
    b2 = h2.add_workload("cali2b", "198.19.2.2", None)
    # h1 also has an interface named like one of h2's endpoints: it must not adopt it.
    stray = h1.add_workload("cali2x", "198.19.2.9", None)
    x2 = h2.add_workload("cali2x", "198.19.2.9", None)
    for host, wl, pod in ((h1, a1, "a1"), (h1, b1, "b1"), (h2, a2, "a2"), (h2, b2, "b2")):
        cluster.add_endpoint(host, wl, pod, role=pod[0])
    cluster.add_endpoint(h2, x2, "x2", role="x")
    # Policy on every "b": only "a"s may connect; its IP set spans both hosts.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "b-from-a"},
        "spec": {"selector": "role == 'b'", "ingress": [
            {"action": "Allow", "source": {"selector": "role == 'a'"}},
        ]},
    })  # fmt: skip
    h1.start()
    h2.start()
    h1.wait_ready()
    h2.wait_ready()
    wait_until(lambda: ping(cluster.ns, a1.netns, "198.19.1.2"), what="a1->b1")
    wait_until(lambda: ping(cluster.ns, a2.netns, "198.19.2.2"), what="a2->b2")
    assert ping(cluster.ns, x2.netns, "198.19.2.1")
    assert not ping(cluster.ns, x2.netns, "198.19.2.2")  # x is not an "a"

    assert endpoint_chains(h1) == {
        f"cali-{d}-{i}" for d in ("tw", "fw") for i in ("cali1a", "cali1b")
    }
    assert endpoint_chains(h2) == {
        f"cali-{d}-{i}" for d in ("tw", "fw") for i in ("cali2a", "cali2b", "cali2x")
    }
    assert "198.19.2" not in h1.routes(4) and "2001:db8:102" not in h1.routes(6)
    assert "198.19.1" not in h2.routes(4) and "2001:db8:101" not in h2.routes(6)
    assert not ping(cluster.ns, stray.netns, "198.19.1.1")  # unknown on h1: dropped
    # Both hosts know every "a" in the cluster.
    assert ipset_members(h1) == ipset_members(h2) == {"198.19.1.1", "198.19.2.1"}
    # A fabric between the hosts (static routes standing in for BGP): the remote "a" is in
    # the local IP set, so cross-host traffic is policed by the same rules.
    cluster.ns.veth(h1.netns, "eth2", h2.netns, "eth2")
    h1.exec(["ip", "addr", "add", "198.18.254.1/30", "dev", "eth2"])
    h2.exec(["ip", "addr", "add", "198.18.254.2/30", "dev", "eth2"])
    h1.exec(["ip", "route", "add", "198.19.2.0/24", "via", "198.18.254.2"])
    h2.exec(["ip", "route", "add", "198.19.1.0/24", "via", "198.18.254.1"])
    wait_until(lambda: ping(cluster.ns, a1.netns, "198.19.2.2"), what="a1 -> b2 across hosts")
    assert ping(cluster.ns, a2.netns, "198.19.1.2")
    assert not ping(cluster.ns, x2.netns, "198.19.1.2")  # x is not an "a" on h1 either
    assert ping(cluster.ns, x2.netns, "198.19.1.1")
    # The trace gives each of those flows the kernel's answer, hop by hop across the hosts.
    flows = {
        ("198.19.1.1", "198.19.1.2"): True,
        ("198.19.2.1", "198.19.2.2"): True,
        ("198.19.2.9", "198.19.2.1"): True,
        ("198.19.2.9", "198.19.2.2"): False,
        ("198.19.1.1", "198.19.2.2"): True,
        ("198.19.2.1", "198.19.1.2"): True,
        ("198.19.2.9", "198.19.1.2"): False,
        ("198.19.2.9", "198.19.1.1"): True,
    }
    assert {f: traced(cluster, *f, "icmp") for f in flows} == flows
    for node in ("h1", "h2"):
        key = f"/calico/felix/v2/no-region/host/{node}/status"
        wait_until(lambda k=key: cluster.backend.get(k) is not None, what=f"{node} heartbeat")

    # Each Felix keeps its own state: stopping h1 leaves h2 working and changing.
    h1.kill()
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "b-from-a"},
        "spec": {"selector": "role == 'b'", "ingress": [
            {"action": "Allow", "source": {"selector": "role == 'x'"}},
        ]},
    })  # fmt: skip
    wait_until(lambda: ping(cluster.ns, x2.netns, "198.19.2.2"), what="h2 applies the change")
    assert not ping(cluster.ns, a2.netns, "198.19.2.2")
    assert traced(cluster, "198.19.2.9", "198.19.2.2", "icmp")
    assert not traced(cluster, "198.19.2.1", "198.19.2.2", "icmp")
    assert ping(cluster.ns, a1.netns, "198.19.1.2")  # h1's kernel still has the old policy
    h1.start()
    h1.wait_ready()
    wait_until(lambda: not ping(cluster.ns, a1.netns, "198.19.1.2"), what="h1 catches up")
    assert not traced(cluster, "198.19.1.1", "198.19.1.2", "icmp")
