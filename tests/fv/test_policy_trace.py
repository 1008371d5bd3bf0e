"""`calicoctl policy trace` against the kernel beyond the policy matrix (whose every probe
test_policy_matrix traces too): forwarding through a host endpoint, and traffic to and from
the host itself. The trace's verdict, computed from the datastore alone, must be what real
packets through the real Felix's rules get, and the rule it says decided each hop must be
one whose kernel counter the packet moved."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until
from .test_host_endpoints import static_neighbours
from .test_policy_matrix import missing_rules, rules_moved
from .tracing import cli_trace

pytestmark = pytest.mark.fv


HOST_V4, HOST_V6 = "198.18.255.1", "2001:db8:ff::1"
UP_V4, UP_V6 = "198.18.255.2", "2001:db8:ff::2"
WL_V4, WL_V6 = "198.19.0.1", "2001:db8:100::1"


Flow = tuple[str, str, str, str, int]  # from netns, source, destination, protocol, port


class FlowCheck:
    """Named flows on one host: once the kernel gives the expected answers, the trace of
    each must give the same, in hops on that host only, and the rules it names (deciding
    and NAT) must be ones whose counters the packet moved."""

    def __init__(self, cluster: Cluster, host: FelixHost, flows: Mapping[str, Flow]) -> None:
        self.cluster, self.host, self.flows = cluster, host, flows
        self.traces: dict[str, dict[str, Any]] = {}  # the last trace of each flow

    def kernel(self, name: str) -> bool:
        ns, _, dst, proto, port = self.flows[name]
        if proto == "icmp":
            return ping(self.cluster.ns, ns, dst, timeout=1)
        return connects(self.cluster.ns, ns, proto, dst, port, timeout=0.7)

    def agree(self, expected: dict[str, bool]) -> dict[str, dict[str, Any]]:
        """What decided each flow (its denying hop's decision, else its last hop's; empty
        where nothing Calico renders did)."""
        wait_until(lambda: all(self.kernel(n) == want for n, want in expected.items()), 30.0,
                   what=f"the kernel to give {expected}")  # fmt: skip
        decided = {}
        for name, want in expected.items():
            _, src, dst, proto, port = self.flows[name]
            icmp = "ICMPv6" if ":" in src else "ICMP"
            flags = ["--from-ip", src, "--to-ip", dst, "--protocol", icmp if port == 0 else proto]
            flags += ["--port", str(port)] if port else []
            out = cli_trace(self.cluster, flags)
            assert (out["verdict"] == "allow") == want, (name, out)
            version = 6 if ":" in src else 4
            for _ in range(3):  # an allowed probe can time out under load: use a clean run
                ok, hit = rules_moved(self.host, version, lambda n=name: self.kernel(n))
                if ok == want:
                    break
            assert {h["host"] for h in out["hops"]} == {self.host.node}, (name, out)
            self.traces[name] = out
            hop = next((h for h in out["hops"] if h["verdict"] == "deny"), out["hops"][-1])
            decided[name] = hop["decided_by"] or {}
            assert not missing_rules(out, hit), (name, missing_rules(out, hit))
        return decided


def forwarded(decided: Mapping[str, Mapping[str, Any]]) -> None:
    """Forwarded traffic is always decided by a rule Felix rendered."""
    assert all("rule_id" in d for d in decided.values()), decided


def test_trace_agrees_through_a_host_endpoint(cluster: Cluster) -> None:
    """An upstream machine behind the host's eth1, which has a host endpoint: forwarded
    traffic is policed by applyOnForward policy only, in both directions' hops."""
    host = cluster.host("h1")
    up = host.upstream
    a = host.add_workload("calitra", WL_V4, WL_V6)
    cluster.add_endpoint(host, a, "a")
    cluster.ns.exec(up, ["ip", "route", "add", "198.19.0.0/16", "via", HOST_V4])
    cluster.ns.exec(up, ["ip", "-6", "route", "add", "2001:db8:100::/48", "via", HOST_V6])
    static_neighbours(cluster, host.netns, "eth1", up, "eth0", UP_V6)
    static_neighbours(cluster, up, "eth0", host.netns, "eth1", HOST_V6)
    for addr in (WL_V4, WL_V6):
        serve(cluster.ns, a.netns, addr, 7070)
        serve(cluster.ns, a.netns, addr, 7071)
    for addr in (UP_V4, UP_V6):
        serve(cluster.ns, up, addr, 9090)
    host.start()
    host.wait_ready()
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-eth1", "labels": {"hep": "uplink"}},
        "spec": {"node": "h1", "interfaceName": "eth1", "expectedIPs": [HOST_V4, HOST_V6]},
    })  # fmt: skip
    flows = {  # (from netns, source, destination, protocol, port)
        "up->wl 7070": (up, UP_V4, WL_V4, "tcp", 7070),
        "up->wl 7071": (up, UP_V4, WL_V4, "tcp", 7071),
        "up->wl 7071 v6": (up, UP_V6, WL_V6, "tcp", 7071),
        "up->wl ping": (up, UP_V4, WL_V4, "icmp", 0),
        "wl->up 9090": (a.netns, WL_V4, UP_V4, "tcp", 9090),
        "wl->up 9090 v6": (a.netns, WL_V6, UP_V6, "tcp", 9090),
    }

    check = FlowCheck(cluster, host, flows)

    # No applyOnForward policy: forwarding through the host endpoint is allowed by default.
    forwarded(check.agree({"up->wl 7071": True, "up->wl ping": True, "wl->up 9090": True}))
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "uplink-forward"},
        "spec": {"selector": "hep == 'uplink'", "applyOnForward": True, "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [7070]}},
        ]},
    })  # fmt: skip
    forwarded(check.agree({
        "up->wl 7070": True,
        "up->wl 7071": False,
        "up->wl 7071 v6": False,
        "up->wl ping": False,
        "wl->up 9090": True,  # no egress applyOnForward policy
        "wl->up 9090 v6": True,
    }))  # fmt: skip


def test_trace_agrees_to_and_from_the_host(cluster: Cluster) -> None:
    """The host-bound scenarios of test_endpoint_to_host and test_host_endpoints through
    the trace: workload -> its host (DefaultEndpointToHostAction from the environment and
    from the datastore, after egress policy),
    upstream -> host and host -> upstream through a host endpoint (failsafes, normal and
    doNotTrack policy), host -> its workload (not policed)."""
    host = cluster.host("h1")
    up = host.upstream
    a = host.add_workload("calith", WL_V4, WL_V6)
    b = host.add_workload("calitb", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a", role="a")
    cluster.add_endpoint(host, b, "b", role="b")
    cluster.apply({  # the host's own addresses, as calico/node records them
        "kind": "Node", "metadata": {"name": "h1"},
        "spec": {"bgp": {"ipv4Address": f"{HOST_V4}/30", "ipv6Address": f"{HOST_V6}/64"}},
    })  # fmt: skip
    static_neighbours(cluster, host.netns, "eth1", up, "eth0", UP_V6)
    static_neighbours(cluster, up, "eth0", host.netns, "eth1", HOST_V6)
    for addr in (HOST_V4, HOST_V6):
        for port in (22, 5000, 8080):
            serve(cluster.ns, host.netns, addr, port)
    for addr in (UP_V4, UP_V6):
        for port in (2379, 8081):
            serve(cluster.ns, up, addr, port)
    host.start()
    host.wait_ready()
    flows = {  # (from netns, source, destination, protocol, port)
        "a->host 5000": (a.netns, WL_V4, HOST_V4, "tcp", 5000),
        "a->host 5000 v6": (a.netns, WL_V6, HOST_V6, "tcp", 5000),
        "a->host ping": (a.netns, WL_V4, HOST_V4, "icmp", 0),
        "b->host 5000": (b.netns, "198.19.0.2", HOST_V4, "tcp", 5000),
        "host->a ping": (host.netns, HOST_V4, WL_V4, "icmp", 0),
        "up->host 22": (up, UP_V4, HOST_V4, "tcp", 22),
        "up->host 22 v6": (up, UP_V6, HOST_V6, "tcp", 22),
        "up->host 8080": (up, UP_V4, HOST_V4, "tcp", 8080),
        "up->host 8080 v6": (up, UP_V6, HOST_V6, "tcp", 8080),
        "up->host ping": (up, UP_V4, HOST_V4, "icmp", 0),
        "up->host ping v6": (up, UP_V6, HOST_V6, "icmp", 0),
        "host->up 2379": (host.netns, HOST_V4, UP_V4, "tcp", 2379),
        "host->up 2379 v6": (host.netns, HOST_V6, UP_V6, "tcp", 2379),
        "host->up 8081": (host.netns, HOST_V4, UP_V4, "tcp", 8081),
    }

    check = FlowCheck(cluster, host, flows)

    # No host endpoint; DefaultEndpointToHostAction Drop; the host reaches its workloads.
    got = check.agree({
        "a->host 5000": False, "a->host 5000 v6": False, "a->host ping": False,
        "host->a ping": True, "up->host 8080": True,
    })  # fmt: skip
    assert (got["a->host 5000"]["what"], got["a->host 5000"]["action"]) == (
        "endpoint to host action",
        "Deny",
    )
    assert got["host->a ping"] == {}  # not policed: no Calico rule decides

    # Accept from Felix's environment, which the datastore does not hold: the trace renders
    # with the settings Felix reported.
    host.kill()
    host.start(FELIX_DEFAULTENDPOINTTOHOSTACTION="Accept")
    host.wait_ready()
    check.agree({"a->host 5000": True, "a->host ping": True})
    host.kill()
    host.start()
    host.wait_ready()
    check.agree({"a->host 5000": False, "a->host ping": False})

    # Accept (from the datastore; Felix restarts itself), after the workload's egress policy.
    cluster.apply({
        "kind": "FelixConfiguration", "metadata": {"name": "default"},
        "spec": {"defaultEndpointToHostAction": "Accept"},
    })  # fmt: skip
    got = check.agree({"a->host 5000": True, "a->host 5000 v6": True, "b->host 5000": True})
    assert (got["a->host 5000"]["what"], got["a->host 5000"]["action"]) == (
        "endpoint to host action",
        "Allow",
    )
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "a-egress"},
        "spec": {"selector": "role == 'a'", "types": ["Egress"], "egress": [
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [5000]}},
            {"action": "Allow"},
        ]},
    })  # fmt: skip
    got = check.agree({
        "a->host 5000": False, "a->host 5000 v6": False, "a->host ping": True,
        "b->host 5000": True,
    })  # fmt: skip
    assert (got["a->host 5000"]["policy"], got["a->host 5000"]["rule_index"]) == ("a-egress", 0)

    # A host endpoint on the uplink with no policy: only the failsafe ports, both ways.
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-eth1", "labels": {"hep": "uplink"}},
        "spec": {"node": "h1", "interfaceName": "eth1", "expectedIPs": [HOST_V4, HOST_V6]},
    })  # fmt: skip
    got = check.agree({
        "up->host 22": True, "up->host 22 v6": True,
        "up->host 8080": False, "up->host 8080 v6": False,
        "up->host ping": False, "up->host ping v6": False,
        "host->up 2379": True, "host->up 2379 v6": True, "host->up 8081": False,
        "a->host ping": True,  # workload -> host does not cross the host endpoint
    })  # fmt: skip
    assert (got["up->host 22"]["what"], got["host->up 2379"]["what"]) == ("failsafe", "failsafe")
    assert got["up->host 8080"]["what"] == "no profile matched"

    # Normal host endpoint policy opens 8080 (not ping).
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "uplink-in"},
        "spec": {"selector": "hep == 'uplink'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}},
        ]},
    })  # fmt: skip
    got = check.agree({"up->host 8080": True, "up->host 8080 v6": True, "up->host ping": False})
    assert (got["up->host 8080"]["policy"], got["up->host 8080"]["rule_index"]) == (
        "uplink-in",
        0,
    )

    # doNotTrack policy decides in raw, ahead of the normal policy (which would allow too).
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "untracked-8080"},
        "spec": {"selector": "hep == 'uplink'", "doNotTrack": True, "applyOnForward": True,
            "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}],
            "egress": [{"action": "Allow", "protocol": "TCP", "source": {"ports": [8080]}}]},
    })  # fmt: skip
    got = check.agree({"up->host 8080": True, "up->host 8080 v6": True, "up->host ping": False})
    assert got["up->host 8080"]["policy"] == "untracked-8080"


def test_trace_agrees_with_a_host_endpoint_found_by_expected_ip(cluster: Cluster) -> None:
    """No interfaceName: Felix finds the host endpoint on the interface carrying its
    expected IP and reports which; the trace renders the endpoint's chains there."""
    host = cluster.host("h1")
    up = host.upstream
    cluster.apply({  # the host's own address, as calico/node records it
        "kind": "Node", "metadata": {"name": "h1"}, "spec": {"bgp": {"ipv4Address": f"{HOST_V4}/30"}},
    })  # fmt: skip
    for port in (22, 8080):
        serve(cluster.ns, host.netns, HOST_V4, port)
    host.start()
    host.wait_ready()
    flows = {
        "up->host 8080": (up, UP_V4, HOST_V4, "tcp", 8080),
        "up->host 22": (up, UP_V4, HOST_V4, "tcp", 22),
    }
    check = FlowCheck(cluster, host, flows)
    check.agree({"up->host 8080": True, "up->host 22": True})  # no host endpoint yet
    cluster.apply({
        "kind": "HostEndpoint", "metadata": {"name": "h1-uplink", "labels": {"hep": "up"}},
        "spec": {"node": "h1", "expectedIPs": [HOST_V4]},
    })  # fmt: skip
    got = check.agree({"up->host 8080": False, "up->host 22": True})  # failsafe
    assert got["up->host 8080"]["chain"].endswith("eth1"), got  # resolved to eth1
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "up-8080"},
        "spec": {"selector": "hep == 'up'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}},
        ]},
    })  # fmt: skip
    got = check.agree({"up->host 8080": True})
    assert got["up->host 8080"]["policy"] == "up-8080", got
