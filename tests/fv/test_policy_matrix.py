"""Policy semantics end to end, as a connectivity matrix between four dual-stack workloads
in two Kubernetes-style namespaces (kns.<ns> profiles with pcns.* labels):
NetworkPolicy scoping, namespaceSelector, named ports, Egress-only policies, tiers with
Pass / Log / Deny and tier default actions, IPv6-only rules; a packet between two local
workloads must pass the sender's egress AND the receiver's ingress."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from calico.calc.messages import PolicyID
from calico.model.policy import GlobalNetworkPolicy, Tier
from calico.rules import naming
from calico.testing.workloads import Workload, connects, ping, serve

from .conftest import Cluster, FelixHost

pytestmark = pytest.mark.fv


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
    def __init__(self, cluster: Cluster, wls: Mapping[str, Workload]) -> None:
        self.cluster = cluster
        self.wls = wls

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


def test_policy_matrix(cluster: Cluster) -> None:
    host = cluster.host("h1")
    for ns in ("prod", "dev"):
        cluster.apply({
            "kind": "Profile", "metadata": {"name": f"kns.{ns}"},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                     "labelsToApply": {"pcns.env": ns, "pcns.projectcalico.org/name": ns}},
        })  # fmt: skip
    specs = {  # name: (namespace, iface, last octet, app, port name, port)
        "pweb": ("prod", "calipweb", 1, "web", "http", 8080),
        "pdb": ("prod", "calipdb", 2, "db", "pg", 5432),
        "dweb": ("dev", "calidweb", 3, "web", "http", 8080),
        "dtool": ("dev", "calidtool", 4, "tool", "http", 8080),
    }
    wls: dict[str, Workload] = {}

    def endpoint(name: str, **labels: str) -> None:
        ns, _, _, app, port_name, port = specs[name]
        ports = [{"name": port_name, "protocol": "TCP", "port": port}]
        cluster.add_endpoint(
            host, wls[name], name, ns, (f"kns.{ns}",), extra={"ports": ports}, app=app, **labels
        )

    for name, (_, iface, octet, _, _, port) in specs.items():
        wls[name] = host.add_workload(iface, f"198.19.0.{octet}", f"2001:db8:100::{octet}")
        endpoint(name)
        for addr in (wls[name].ipv4, wls[name].ipv6):
            assert addr is not None
            serve(cluster.ns, wls[name].netns, addr, port)
    host.start()
    host.wait_ready()
    m = Matrix(cluster, wls)

    # Stage 0: namespace profiles allow everything.
    m.expect({p: True for p in [*both("dweb", "pdb", "tcp", 5432), *both("pdb", "dweb", "icmp")]})

    # Stage 1: NetworkPolicies. db: web of its own namespace on the named port "pg", and
    # tools of "env == dev" namespaces; dev's deny-web must not touch prod's web.
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
    stage1 = {
        **{p: True for p in both("pweb", "pdb", "tcp", 5432)},
        **{p: False for p in both("dweb", "pdb", "tcp", 5432)},  # same-namespace selector
        **{p: True for p in both("dtool", "pdb", "tcp", 5432)},  # namespaceSelector
        **{p: False for p in both("pweb", "pdb", "icmp")},
        **{p: True for p in both("pdb", "pweb", "tcp", 8080)},  # db's egress is open
        **{p: False for p in both("pweb", "dweb", "tcp", 8080)},  # dev's web denies
        **{p: True for p in both("dtool", "pweb", "tcp", 8080)},  # prod's web does not
    }
    m.expect(stage1)

    # Stage 2: Egress-only policy on db: ICMP anywhere, TCP 8080 to web in its namespace.
    # The sender's egress and the receiver's ingress must both allow.
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
        **{p: False for p in both("pdb", "dtool", "tcp", 8080)},  # db egress denies
        **{p: True for p in both("pdb", "dtool", "icmp")},
        **{p: False for p in both("pdb", "dweb", "icmp")},  # dweb ingress denies
        **{p: False for p in both("pdb", "dweb", "tcp", 8080)},  # both deny
        **{p: True for p in both("pweb", "pdb", "tcp", 5432)},  # db ingress unchanged
    }
    m.expect(stage2)

    # Stage 3: a "security" tier ahead of the default one. Quarantined sources are logged
    # and denied; everything else passes on to the default tier and the profiles.
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
        **{p: True for p in both("pweb", "pdb", "tcp", 5432)},  # passed to the default tier
        **{p: False for p in both("dweb", "pdb", "tcp", 5432)},  # ... which still denies
        **{p: True for p in both("pweb", "dtool", "tcp", 8080)},  # tool's ingress passes
    }
    m.expect(stage3)
    chain = naming.policy_chain_name(PolicyID("security", "security.quarantine"), inbound=True)
    assert rules_hit(host, chain, "LOG") > 0
    endpoint("dtool")
    m.expect({p: True for p in both("dtool", "pweb", "tcp", 8080)})

    # Tier default action: a tier whose only policy just logs. With defaultAction Pass
    # nothing changes; with Deny (the default) the end of the tier drops (calico#3801).
    cluster.apply({
        "kind": "Tier", "metadata": {"name": "audit"},
        "spec": {"order": 50, "defaultAction": "Pass"},
    })  # fmt: skip
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "audit.log-web"},
        "spec": {"tier": "audit", "selector": "app == 'web'", "ingress": [{"action": "Log"}]},
    })  # fmt: skip
    stage_pass = {
        **{p: True for p in both("dtool", "pweb", "tcp", 8080)},
        **{p: True for p in both("pweb", "dtool", "tcp", 8080)},
    }
    m.expect(stage_pass)
    audit_chain = naming.policy_chain_name(PolicyID("audit", "audit.log-web"), inbound=True)
    assert rules_hit(host, audit_chain, "LOG") > 0  # the tier was evaluated
    cluster.apply({
        "kind": "Tier", "metadata": {"name": "audit"},
        "spec": {"order": 50, "defaultAction": "Deny"},
    })  # fmt: skip
    m.expect({
        **{p: False for p in both("dtool", "pweb", "tcp", 8080)},  # web: end of tier
        **{p: True for p in both("pweb", "dtool", "tcp", 8080)},  # tool: tier not applied
    })  # fmt: skip
    cluster.delete(GlobalNetworkPolicy, "audit.log-web")
    cluster.delete(Tier, "audit")
    m.expect(stage_pass)

    # Stage 4: rules for one IP version: prod's web takes TCP 8080 over IPv6 only and
    # ping over IPv4 only.
    cluster.apply({
        "kind": "GlobalNetworkPolicy", "metadata": {"name": "web-v6"},
        "spec": {"selector": "app == 'web' && projectcalico.org/namespace == 'prod'",
            "ingress": [
                {"action": "Allow", "ipVersion": 6, "protocol": "TCP",
                 "destination": {"ports": [8080]}},
                {"action": "Allow", "ipVersion": 4, "protocol": "ICMP"},
            ]},
    })  # fmt: skip
    m.expect({
        Probe("pdb", "pweb", "tcp", 8080, v6=True): True,
        Probe("pdb", "pweb", "tcp", 8080): False,
        Probe("pdb", "pweb", "icmp"): True,
        Probe("pdb", "pweb", "icmp", v6=True): False,
        Probe("dtool", "pweb", "tcp", 8080, v6=True): True,
        Probe("dtool", "pweb", "tcp", 8080): False,
    })  # fmt: skip
