"""`calicoctl policy trace` against the kernel: for every probe of several policy stages
(profiles, NetworkPolicy selectors, namespaceSelector, named ports, egress-only policy, UDP,
Pass in the default tier, a tier with Log/Deny/Pass, tier default actions, IPv6-only and
IPv4-only rules, policies refused in etcd and enforced as deny-all), the trace's verdict,
computed from the datastore alone, must be what real packets through the real Felix's rules
get, and the rule it says decided each hop must be one whose kernel counter the packet
moved."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from click.testing import CliRunner

from calico.ctl.main import cli
from calico.lab.explain import TABLES, Counters, moved, parse_counters
from calico.model.policy import GlobalNetworkPolicy, Tier
from calico.testing.workloads import Workload, connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until
from .test_broken_policy_directions import put_raw
from .test_host_endpoints import static_neighbours
from .test_policy_matrix import Matrix, Probe, both

pytestmark = pytest.mark.fv

SPECS = {  # name: (namespace, iface, last octet, app, port name, port)
    "pweb": ("prod", "calitpweb", 1, "web", "http", 8080),
    "pdb": ("prod", "calitpdb", 2, "db", "pg", 5432),
    "dweb": ("dev", "calitdweb", 3, "web", "http", 8080),
    "dtool": ("dev", "calitdtool", 4, "tool", "http", 8080),
}


def trace_json(cluster: Cluster, probe: Probe, wls: Mapping[str, Workload]) -> dict[str, Any]:
    src_ns, dst = SPECS[probe.src][0], wls[probe.dst]
    address = dst.ipv6 if probe.v6 else dst.ipv4
    assert address is not None
    proto = {"icmp": "ICMPv6" if probe.v6 else "ICMP"}.get(probe.proto, probe.proto.upper())
    flags = ["--from", f"{src_ns}/{probe.src}", "--to-ip", address, "--protocol", proto]
    if probe.port:
        flags += ["--port", str(probe.port)]
    return cli_trace(cluster, flags)


def cli_trace(cluster: Cluster, flags: list[str]) -> dict[str, Any]:
    runner = CliRunner(env={"ETCD_ENDPOINTS": cluster.etcd.endpoint, "ETCD_CA_CERT_FILE": ""})
    result = runner.invoke(cli, ["policy", "trace", *flags, "-o", "json"])
    assert result.exit_code == 0, (flags, result.output)
    out: dict[str, Any] = json.loads(result.output)
    return out


def check(cluster: Cluster, m: Matrix, expected: Mapping[Probe, bool]) -> list[dict[str, Any]]:
    """Wait for the kernel to converge on `expected`, then every trace must agree with it."""
    m.expect(expected)
    traces = [trace_json(cluster, p, m.wls) for p in expected]
    wrong = [
        f"{p}: kernel {'allows' if want else 'denies'}, trace says {t['verdict']}"
        for (p, want), t in zip(expected.items(), traces, strict=True)
        if (t["verdict"] == "allow") != want
    ]
    assert not wrong, "trace disagrees with the kernel:\n  " + "\n  ".join(wrong)
    unhit = [
        f"{p}: {miss}"
        for p, t in zip(expected, traces, strict=True)
        for miss in unhit_rules(m, p, t)
    ]
    assert not unhit, "the trace's deciding rule is not one the packets hit:\n  " + "\n  ".join(
        unhit
    )
    return traces


def counters(host: FelixHost, version: int) -> Counters:
    out: Counters = {}
    for table in TABLES:
        out.update(parse_counters(host.iptables_save(table, version, counters=True)))
    return out


def unhit_rules(m: Matrix, probe: Probe, trace: dict[str, Any]) -> list[str]:
    """Probe again, reading the kernel's counters: the rule the trace says decided each hop
    the packet reached must be one whose counter moved."""
    host = m.cluster.hosts[0]
    version = 6 if probe.v6 else 4
    allowed = trace["verdict"] == "allow"
    for _ in range(3):  # an allowed probe can time out under load: use a clean run
        before = counters(host, version)
        ok = m.run(probe)
        hit = {h.rule_id for h in moved(host.node, before, counters(host, version))}
        if ok == allowed:
            break
    assert ok == allowed, probe
    missing = []
    for hop in trace["hops"]:
        decided = hop["decided_by"] or {}
        if "rule_id" in decided and decided["rule_id"] not in hit:
            missing.append(f"{hop['direction']} {decided['chain']} {decided['rule']}")
        if hop["verdict"] == "deny":
            break  # dropped here: the kernel never saw the next hop
    return missing


def test_trace_agrees_with_the_kernel(cluster: Cluster) -> None:
    host = cluster.host("h1")
    for ns in ("prod", "dev"):
        cluster.apply({
            "kind": "Profile", "metadata": {"name": f"kns.{ns}"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                     "labelsToApply": {"pcns.env": ns, "pcns.projectcalico.org/name": ns}},
        })  # fmt: skip
    wls: dict[str, Workload] = {}

    def endpoint(name: str, **labels: str) -> None:
        ns, _, _, app, port_name, port = SPECS[name]
        ports = [{"name": port_name, "protocol": "TCP", "port": port}]
        cluster.add_endpoint(
            host, wls[name], name, ns, (f"kns.{ns}",), extra={"ports": ports}, app=app, **labels
        )

    for name, (_, iface, octet, _, _, port) in SPECS.items():
        wls[name] = host.add_workload(iface, f"198.19.0.{octet}", f"2001:db8:100::{octet}")
        endpoint(name)
        for addr in (wls[name].ipv4, wls[name].ipv6):
            assert addr is not None
            serve(cluster.ns, wls[name].netns, addr, port)
    host.start()
    host.wait_ready()
    m = Matrix(cluster, wls)

    # Profiles only.
    traces = check(cluster, m, {p: True for p in [*both("dweb", "pdb", "tcp", 5432),
                                                  *both("pdb", "dweb", "icmp")]})  # fmt: skip
    assert traces[0]["hops"][1]["decided_by"]["profile"] == "kns.prod"

    # NetworkPolicies: same-namespace selector, namespaceSelector, named port; dev's web
    # denies all ingress; UDP to prod's web is denied from dtool's address (nets), other
    # sources Pass to the profiles.
    cluster.apply({
        "kind": "NetworkPolicy", "metadata": {"name": "db-ingress", "namespace": "prod"},
        "spec": {"selector": "app == 'db'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'web'"},
             "destination": {"ports": ["pg"]}},
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["pg"]},
             "source": {"namespaceSelector": "env == 'dev'", "selector": "app == 'tool'"}},
        ]},
    })  # fmt: skip
    cluster.apply({
        "kind": "NetworkPolicy", "metadata": {"name": "deny-web", "namespace": "dev"},
        "spec": {"selector": "app == 'web'", "types": ["Ingress"]},
    })  # fmt: skip
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "web-udp"},
        "spec": {"selector": "app == 'web' && projectcalico.org/namespace == 'prod'",
                 "types": ["Ingress"], "ingress": [
            {"action": "Deny", "protocol": "UDP", "source": {"nets": ["198.19.0.4/32"]}},
            {"action": "Deny", "protocol": "UDP", "source": {"nets": ["2001:db8:100::4/128"]}},
            {"action": "Pass"},
        ]},
    })  # fmt: skip
    stage1 = {
        **{p: True for p in both("pweb", "pdb", "tcp", 5432)},
        **{p: False for p in both("dweb", "pdb", "tcp", 5432)},
        **{p: True for p in both("dtool", "pdb", "tcp", 5432)},
        **{p: False for p in both("pweb", "pdb", "icmp")},
        **{p: True for p in both("pdb", "pweb", "tcp", 8080)},
        **{p: False for p in both("pweb", "dweb", "tcp", 8080)},
        **{p: True for p in both("dtool", "pweb", "tcp", 8080)},
        **{p: False for p in both("dtool", "pweb", "udp", 8080)},
        **{p: True for p in both("pdb", "pweb", "udp", 8080)},
    }
    traces = check(cluster, m, stage1)
    by_probe = dict(zip(stage1, traces, strict=True))
    dtool_pdb = by_probe[Probe("dtool", "pdb", "tcp", 5432)]["hops"][1]["decided_by"]
    assert (dtool_pdb["policy"], dtool_pdb["rule_index"]) == ("prod/db-ingress", 1)
    dweb_pdb = by_probe[Probe("dweb", "pdb", "tcp", 5432)]["hops"][1]["decided_by"]
    assert (dweb_pdb["what"], dweb_pdb["tier"]) == ("end of tier", "default")
    udp = by_probe[Probe("dtool", "pweb", "udp", 8080)]["hops"][1]["decided_by"]
    assert (udp["policy"], udp["rule_index"], udp["action"]) == ("web-udp", 0, "Deny")

    # Egress-only policy on db: the sender's egress and the receiver's ingress both count.
    cluster.apply({
        "kind": "NetworkPolicy", "metadata": {"name": "db-egress", "namespace": "prod"},
        "spec": {"selector": "app == 'db'", "types": ["Egress"], "egress": [
            {"action": "Allow", "protocol": "ICMP"},
            {"action": "Allow", "protocol": "ICMPv6"},
            {"action": "Allow", "protocol": "TCP", "destination": {
                "selector": "app == 'web'", "ports": [8080]}},
        ]},
    })  # fmt: skip
    stage2 = {
        **{p: True for p in both("pdb", "pweb", "tcp", 8080)},
        **{p: False for p in both("pdb", "dtool", "tcp", 8080)},
        **{p: True for p in both("pdb", "dtool", "icmp")},
        **{p: False for p in both("pdb", "dweb", "icmp")},
        **{p: False for p in both("pdb", "dweb", "tcp", 8080)},
        **{p: False for p in both("pdb", "pweb", "udp", 8080)},
        **{p: True for p in both("pweb", "pdb", "tcp", 5432)},
    }
    traces = check(cluster, m, stage2)
    egress = traces[2]["hops"][0]
    assert (egress["direction"], egress["verdict"]) == ("egress", "deny")

    # A security tier ahead of the default one: quarantined sources are logged and denied,
    # everything else passes on.
    cluster.apply({"kind": "Tier", "metadata": {"name": "security"}, "spec": {"order": 100}})
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "security.quarantine"},
        "spec": {"tier": "security", "selector": "all()", "types": ["Ingress", "Egress"],
            "ingress": [
                {"action": "Log", "source": {"selector": "quarantine == 'true'"}},
                {"action": "Deny", "source": {"selector": "quarantine == 'true'"}},
                {"action": "Pass"},
            ],
            "egress": [{"action": "Pass"}]},
    })  # fmt: skip
    endpoint("dtool", quarantine="true")
    stage3 = {
        **{p: False for p in both("dtool", "pweb", "tcp", 8080)},
        **{p: False for p in both("dtool", "pdb", "tcp", 5432)},
        **{p: True for p in both("pweb", "pdb", "tcp", 5432)},
        **{p: False for p in both("dweb", "pdb", "tcp", 5432)},
        **{p: True for p in both("pweb", "dtool", "tcp", 8080)},
    }
    traces = check(cluster, m, stage3)
    quarantined = traces[0]["hops"][1]["decided_by"]
    assert (quarantined["tier"], quarantined["rule_index"]) == ("security", 1)
    endpoint("dtool")
    cluster.delete(GlobalNetworkPolicy, "web-udp")  # its Pass would skip web-v6 below

    # Tier default action: a Log-only tier passes with Pass and drops at its end with Deny.
    for default, open_ in (("Pass", True), ("Deny", False)):
        cluster.apply({
            "kind": "Tier", "metadata": {"name": "audit"},
            "spec": {"order": 50, "defaultAction": default},
        })  # fmt: skip
        cluster.apply({
            "kind": "GlobalNetworkPolicy", "metadata": {"name": "audit.log-web"},
            "spec": {"tier": "audit", "selector": "app == 'web'",
                     "ingress": [{"action": "Log"}]},
        })  # fmt: skip
        check(cluster, m, {
            **{p: open_ for p in both("dtool", "pweb", "tcp", 8080)},
            **{p: True for p in both("pweb", "dtool", "tcp", 8080)},
        })  # fmt: skip
    cluster.delete(GlobalNetworkPolicy, "audit.log-web")
    cluster.delete(Tier, "audit")

    # Rules for one IP version.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "web-v6"},
        "spec": {"selector": "app == 'web' && projectcalico.org/namespace == 'prod'",
            "ingress": [
                {"action": "Allow", "ipVersion": 6, "protocol": "TCP",
                 "destination": {"ports": [8080]}},
                {"action": "Allow", "ipVersion": 4, "protocol": "ICMP"},
            ]},
    })  # fmt: skip
    check(cluster, m, {
        Probe("pdb", "pweb", "tcp", 8080, v6=True): True,
        Probe("pdb", "pweb", "tcp", 8080): False,
        Probe("pdb", "pweb", "icmp"): True,
        Probe("pdb", "pweb", "icmp", v6=True): False,
        Probe("dtool", "pweb", "tcp", 8080, v6=True): True,
        Probe("dtool", "pweb", "tcp", 8080): False,
    })  # fmt: skip

    # Policies another tool wrote with values calico-py refuses: Felix enforces them as
    # deny-all in the directions they cover (both when their types cannot be read).
    put_raw(cluster, "broken-in", {"selector": "app == 'db'", "types": ["Ingress"], "ingress": [
        {"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}}]})  # fmt: skip
    put_raw(cluster, "broken-both", {"selector": "app == 'tool'", "types": "sideways"})
    traces = check(cluster, m, {
        **{p: False for p in both("pweb", "pdb", "tcp", 5432)},  # db: ingress denied
        Probe("pdb", "pweb", "tcp", 8080, v6=True): True,  # ... its egress untouched
        Probe("pdb", "pweb", "icmp"): True,
        **{p: False for p in both("dtool", "pweb", "icmp")},  # tool: egress denied
        **{p: False for p in both("pdb", "dtool", "icmp")},  # ... and ingress
    })  # fmt: skip
    broken = traces[0]["hops"][1]["decided_by"]
    assert (broken["policy"], broken["rule_index"], broken["action"]) == ("broken-in", 0, "Deny")


HOST_V4, HOST_V6 = "198.18.255.1", "2001:db8:ff::1"
UP_V4, UP_V6 = "198.18.255.2", "2001:db8:ff::2"
WL_V4, WL_V6 = "198.19.0.1", "2001:db8:100::1"


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

    def kernel(name: str) -> bool:
        ns, _, dst, proto, port = flows[name]
        if proto == "icmp":
            return ping(cluster.ns, ns, dst, timeout=1)
        return connects(cluster.ns, ns, proto, dst, port, timeout=0.7)

    def agree(expected: dict[str, bool]) -> None:
        wait_until(lambda: all(kernel(n) == want for n, want in expected.items()), 20.0,
                   what=f"the kernel to give {expected}")  # fmt: skip
        for name, want in expected.items():
            _, src, dst, proto, port = flows[name]
            icmp = "ICMPv6" if ":" in src else "ICMP"
            flags = ["--from-ip", src, "--to-ip", dst, "--protocol", icmp if port == 0 else proto]
            flags += ["--port", str(port)] if port else []
            out = cli_trace(cluster, flags)
            assert (out["verdict"] == "allow") == want, (name, out)
            version = 6 if ":" in src else 4
            for _ in range(3):  # an allowed probe can time out under load: use a clean run
                before = counters(host, version)
                ok = kernel(name)
                hit = {h.rule_id for h in moved(host.node, before, counters(host, version))}
                if ok == want:
                    break
            (hop,) = out["hops"]  # the upstream is external: one hop
            assert hop["decided_by"]["rule_id"] in hit, (name, hop["decided_by"])

    # No applyOnForward policy: forwarding through the host endpoint is allowed by default.
    agree({"up->wl 7071": True, "up->wl ping": True, "wl->up 9090": True})
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "uplink-forward"},
        "spec": {"selector": "hep == 'uplink'", "applyOnForward": True, "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [7070]}},
        ]},
    })  # fmt: skip
    agree({
        "up->wl 7070": True,
        "up->wl 7071": False,
        "up->wl 7071 v6": False,
        "up->wl ping": False,
        "wl->up 9090": True,  # no egress applyOnForward policy
        "wl->up 9090 v6": True,
    })  # fmt: skip
