"""Periodic refresh repairs what is changed behind Felix's back: iptables rules and chains,
workload routes and static ARP entries, IP set members (refresh intervals are 2 s here)."""

from __future__ import annotations

import shlex

import pytest

from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until

pytestmark = pytest.mark.fv
REPAIR = 8.0  # refresh interval 2 s, plus margin for a loaded machine


def ipset_members(host: FelixHost, prefix: str) -> dict[str, set[str]]:
    members: dict[str, set[str]] = {}
    for line in host.exec(["ipset", "save"]).stdout.splitlines():
        words = line.split()
        if words[0] == "create" and words[1].startswith(prefix):
            members[words[1]] = set()
        elif words[0] == "add" and words[1] in members:
            members[words[1]].add(words[2])
    return members


def test_tampering_is_repaired_by_periodic_refresh(cluster: Cluster) -> None:
    host = cluster.host("h1")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, a, "a", role="client")
    cluster.add_endpoint(host, b, "b", role="server")
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "server"},
        "spec": {"selector": "role == 'server'", "ingress": [
            {"action": "Allow", "source": {"selector": "role == 'client'"}},
        ]},
    })  # fmt: skip
    serve(cluster.ns, b.netns, "198.19.0.2", 8080)
    host.start()
    host.wait_ready()
    wait_until(lambda: connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080), what="a->b")
    filter4 = host.cali_lines("filter", 4)
    filter6 = host.cali_lines("filter", 6)
    raw4 = host.cali_lines("raw", 4)
    routes = host.routes(4), host.routes(6)
    sets = ipset_members(host, "cali40s:")
    assert sets and all("198.19.0.1" in m for m in sets.values()), sets
    neigh = host.exec(["ip", "neigh", "show", "dev", "cali1b", "nud", "permanent"]).stdout
    assert "198.19.0.2" in neigh

    # Rules: one deleted from b's ingress chain, a whole chain flushed, a hook deleted
    # (IPv6 and raw as well).
    host.exec(["iptables", "-D", "cali-tw-cali1b", "1"])
    host.exec(["iptables", "-F", "cali-fw-cali1a"])
    host.exec(["iptables", "-D", "FORWARD", "1"])
    host.exec(["ip6tables", "-F", "cali-tw-cali1b"])
    host.exec(["iptables", "-t", "raw", "-F", "cali-PREROUTING"])
    # A chain deleted outright: unhook it first (as an admin would have to).
    for rule in host.chain("cali-from-wl-dispatch"):
        if "cali-fw-cali1a" in rule:
            host.exec(["iptables", "-D", *shlex.split(rule)[1:]])
    host.exec(["iptables", "-X", "cali-fw-cali1a"])
    # A foreign chain with our prefix is swept, too.
    host.exec(["iptables", "-N", "cali-bogus"])
    # Routes and the static ARP entry.
    host.exec(["ip", "route", "del", "198.19.0.2/32", "dev", "cali1b"])
    host.exec(["ip", "-6", "route", "del", "2001:db8:100::1/128", "dev", "cali1a"])
    host.exec(["ip", "neigh", "del", "198.19.0.2", "dev", "cali1b"])
    # IP set members: ours removed, a foreign one added.
    for name in sets:
        host.exec(["ipset", "del", name, "198.19.0.1"])
        host.exec(["ipset", "add", name, "198.19.0.66"])
    # Sysctls of a workload interface.
    host.exec(["sysctl", "-qw", "net.ipv4.conf.cali1b.proxy_arp=0"])
    host.exec(["sysctl", "-qw", "net.ipv4.conf.cali1a.rp_filter=0"])
    # A foreign rule inserted above our hook (insert mode wants ours first).
    host.exec(["iptables", "-I", "INPUT", "1", "-p", "udp", "--dport", "9", "-j", "ACCEPT"])

    wait_until(lambda: host.cali_lines("filter", 4) == filter4, REPAIR, "IPv4 filter repaired")
    wait_until(lambda: host.cali_lines("filter", 6) == filter6, REPAIR, "IPv6 filter repaired")
    wait_until(lambda: host.cali_lines("raw", 4) == raw4, REPAIR, "raw repaired")
    wait_until(lambda: (host.routes(4), host.routes(6)) == routes, REPAIR, "routes repaired")
    wait_until(lambda: ipset_members(host, "cali40s:") == sets, REPAIR, "IP sets repaired")
    wait_until(
        lambda: "198.19.0.2" in host.exec(["ip", "neigh", "show", "nud", "permanent"]).stdout,
        REPAIR,
        "ARP entry repaired",
    )
    wait_until(
        lambda: host.exec(["sysctl", "-n", "net.ipv4.conf.cali1b.proxy_arp"]).stdout == "1\n",
        REPAIR,
        "proxy_arp repaired",
    )
    rp_filter = host.exec(["sysctl", "-n", "net.ipv4.conf.cali1a.rp_filter"]).stdout
    assert rp_filter == "1\n"
    # Our hook is first again; the foreign rule is kept, after it.
    input_rules = host.chain("INPUT")
    assert "cali-INPUT" in input_rules[0], input_rules
    assert any("--dport 9" in rule for rule in input_rules[1:]), input_rules
    assert connects(cluster.ns, a.netns, "tcp", "198.19.0.2", 8080)
    assert ping(cluster.ns, a.netns, "2001:db8:100::2")
