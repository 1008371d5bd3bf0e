"""Policy semantics end to end, as a connectivity matrix between four dual-stack workloads
in two Kubernetes-style namespaces (kns.<ns> profiles with pcns.* labels):
NetworkPolicy scoping, namespaceSelector, named ports, Egress-only policies, UDP by nets,
tiers with Pass / Log / Deny and tier default actions, IPv6-only rules, policies refused in
etcd; a packet between two local workloads must pass the sender's egress AND the receiver's
ingress. Every probe is also traced (`calicoctl policy trace`, from the datastore alone):
its verdict must be the kernel's, and the rule it says decided each hop must be one whose
kernel counter the packet moved."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from calico.calc.messages import PolicyID
from calico.lab.explain import TABLES, Counters, moved, parse_counters
from calico.model.policy import GlobalNetworkPolicy, Tier
from calico.rules import naming
from calico.testing.workloads import Workload, connects, ping, serve

from .conftest import Cluster, FelixHost
from .test_broken_policy_directions import put_raw
from .tracing import cli_trace

pytestmark = pytest.mark.fv
T = TypeVar("T")

SPECS = {  # name: (namespace, iface, last octet, app, port name, port)
    "pweb": ("prod", "calipweb", 1, "web", "http", 8080),
    "pdb": ("prod", "calipdb", 2, "db", "pg", 5432),
    "dweb": ("dev", "calidweb", 3, "web", "http", 8080),
    "dtool": ("dev", "calidtool", 4, "tool", "http", 8080),
}


@dataclass(frozen=True)
class Probe:
    src: str
    dst: str
    proto: str  # tcp or icmp
    port: int = 0
    v6: bool = False

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.src}->{self.dst} {self.proto}{port}{' v6' if self.v6 else ''}"


class Matrix:
    def __init__(
        self, cluster: Cluster, wls: Mapping[str, Workload], namespaces: Mapping[str, str]
    ) -> None:
        self.cluster = cluster
        self.wls = wls
        self.namespaces = namespaces  # workload -> its namespace, for the trace's --from

    def run(self, probe: Probe) -> bool:
        src, dst = self.wls[probe.src], self.wls[probe.dst]
        addr = dst.ipv6 if probe.v6 else dst.ipv4
        assert addr is not None
        if probe.proto == "icmp":
            return ping(self.cluster.ns, src.netns, addr, timeout=1)
        return connects(self.cluster.ns, src.netns, probe.proto, addr, probe.port, timeout=0.7)

    def mismatches(self, expected: Mapping[Probe, bool]) -> list[str]:
        probes = list(expected)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(self.run, probes))
        return [
            f"{p}: expected {'open' if expected[p] else 'closed'}"
            for p, got in zip(probes, results, strict=True)
            if got != expected[p]
        ]

    def expect(self, expected: Mapping[Probe, bool], timeout: float = 15.0) -> None:
        """Re-run the whole matrix until it matches (Felix converges), or fail listing
        every probe that is still wrong."""
        deadline = time.monotonic() + timeout
        while bad := self.mismatches(expected):
            if time.monotonic() > deadline:
                raise AssertionError("policy matrix mismatch:\n  " + "\n  ".join(bad))
            time.sleep(0.2)


def both(src: str, dst: str, proto: str, port: int = 0) -> list[Probe]:
    return [Probe(src, dst, proto, port), Probe(src, dst, proto, port, v6=True)]


def rules_hit(host: FelixHost, chain: str, target: str) -> int:
    total = 0
    for line in host.iptables_save(counters=True).splitlines():
        found = re.match(r"^\[(\d+):\d+\] -A (\S+) .* -j (\S+)", line)
        if found and found.group(2) == chain and found.group(3) == target:
            total += int(found.group(1))
    return total


def trace_json(cluster: Cluster, m: Matrix, probe: Probe) -> dict[str, Any]:
    src_ns, dst = m.namespaces[probe.src], m.wls[probe.dst]
    address = dst.ipv6 if probe.v6 else dst.ipv4
    assert address is not None
    proto = {"icmp": "ICMPv6" if probe.v6 else "ICMP"}.get(probe.proto, probe.proto.upper())
    flags = ["--from", f"{src_ns}/{probe.src}", "--to-ip", address, "--protocol", proto]
    if probe.port:
        flags += ["--port", str(probe.port)]
    return cli_trace(cluster, flags)


def check(cluster: Cluster, m: Matrix, expected: Mapping[Probe, bool]) -> list[dict[str, Any]]:
    """Wait for the kernel to converge on `expected`, then every trace must agree with it."""
    m.expect(expected)
    traces = [trace_json(cluster, m, p) for p in expected]
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


def rules_moved(host: FelixHost, version: int, send: Callable[[], T]) -> tuple[T, set[str]]:
    """What `send()` returned, and the IDs of the host's Calico rules whose counters moved
    meanwhile."""
    before = counters(host, version)
    result = send()
    return result, {h.rule_id for h in moved(host.node, before, counters(host, version))}


def missing_rules(trace: dict[str, Any], hit: set[str]) -> list[str]:
    """The rules the trace says the packet went through (each hop's deciding rule, each
    NAT rule) that are not in `hit`, up to the hop that dropped it."""
    missing = []
    for hop in trace["hops"]:
        decided = hop["decided_by"] or {}
        if "rule_id" in decided and decided["rule_id"] not in hit:
            missing.append(f"{hop['direction']} {decided['chain']} {decided['rule']}")
        missing += [f"{hop['direction']} nat {n['chain']} {n['rule']}"
                    for n in hop["nat"] if n["rule_id"] not in hit]  # fmt: skip
        if hop["verdict"] == "deny":
            break  # dropped here: the kernel never saw the next hop
    return missing


def unhit_rules(m: Matrix, probe: Probe, trace: dict[str, Any]) -> list[str]:
    """Probe again, reading the kernel's counters: the rule the trace says decided each hop
    the packet reached must be one whose counter moved."""
    host = m.cluster.hosts[0]
    version = 6 if probe.v6 else 4
    allowed = trace["verdict"] == "allow"
    for _ in range(3):  # an allowed probe can time out under load: use a clean run
        ok, hit = rules_moved(host, version, lambda: m.run(probe))
        if ok == allowed:
            break
    assert ok == allowed, probe
    return missing_rules(trace, hit)


def test_policy_matrix(cluster: Cluster) -> None:
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
    m = Matrix(cluster, wls, {name: spec[0] for name, spec in SPECS.items()})

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
    chain = naming.policy_chain_name(PolicyID("security", "security.quarantine"), inbound=True)
    assert rules_hit(host, chain, "LOG") > 0
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
        audit_chain = naming.policy_chain_name(PolicyID("audit", "audit.log-web"), inbound=True)
        assert rules_hit(host, audit_chain, "LOG") > 0  # the tier was evaluated
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
