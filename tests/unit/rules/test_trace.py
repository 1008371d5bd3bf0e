"""Policy trace over many policy shapes: resources -> the real calc graph -> rendered chains
-> a packet walked through them; verdicts and the rule that decided."""

from __future__ import annotations

from typing import Any

import pytest

from calico.ctl.trace_source import Snapshot, address_end, hosts_of, workload_end
from calico.model.codec import parse_resource
from calico.rules.config import RulesConfig
from calico.rules.model import ANY, Chain, Hook, Jump, Rule, Verdict
from calico.rules.packet_walk import Packet, Tables, WalkError, walk
from calico.rules.trace import Flow, HostInput, Trace, to_json, trace

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
ALLOW_ALL = {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}


def wep(name: str, ns: str, node: str, ip: str, iface: str, **labels: str) -> dict[str, Any]:
    ports = [{"name": "http", "protocol": "TCP", "port": 8080}]
    return {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": f"{node}-k8s-{name}-eth0", "namespace": ns, "labels": labels},
        "spec": {"node": node, "orchestrator": "k8s", "pod": name, "endpoint": "eth0",
                 "interfaceName": iface, "ipNetworks": [ip], "profiles": [f"kns.{ns}"],
                 "ports": ports},
    }  # fmt: skip


def ns_profile(ns: str, rules: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Profile",
        "metadata": {"name": f"kns.{ns}"},
        "spec": {**(rules if rules is not None else ALLOW_ALL),
                 "labelsToApply": {"pcns.env": ns, "pcns.projectcalico.org/name": ns}},
    }  # fmt: skip


BASE = [
    ns_profile("prod"),
    ns_profile("dev"),
    wep("web", "prod", "h1", "198.19.0.1/32", "caliweb", app="web"),
    wep("db", "prod", "h2", "198.19.0.2/32", "calidb", app="db"),
    wep("tool", "dev", "h2", "198.19.0.3/32", "calitool", app="tool"),
    wep("web6", "prod", "h1", "2001:db8::1/128", "caliweb6", app="web"),
]


def snapshot(*docs: dict[str, Any]) -> Snapshot:
    resources = [parse_resource({"apiVersion": "projectcalico.org/v3", **d}) for d in docs]
    resources.append(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                                     "metadata": {"name": "default"}, "spec": {}}))  # fmt: skip
    return Snapshot(tuple(resources))


def run(snap: Snapshot, src: str, dst: str, proto: int = TCP, port: int | None = 8080) -> Trace:
    ends = [
        workload_end(snap, e, None) if "/" in e and ":" not in e else address_end(snap, e)
        for e in (src, dst)
    ]
    hosts = hosts_of(ends)
    icmp = {ICMP: 8, ICMP6: 128}.get(proto)
    flow = Flow(
        ends[0],
        ends[1],
        proto,
        dst_port=port if icmp is None else None,
        src_port=32768 if icmp is None else None,
        icmp_type=icmp,
        icmp_code=0 if icmp is not None else None,
    )
    inputs = {h: HostInput(snap.host_state(h), RulesConfig(), snap.uplink(h)) for h in hosts}
    return trace(inputs, flow, snap.considered())


def decided(result: Trace, hop: int) -> dict[str, object]:
    decision = result.hops[hop].decision
    assert decision is not None
    return decision.to_json()


def test_profiles_allow_across_hosts() -> None:
    result = run(snapshot(*BASE), "prod/web", "prod/db")
    assert result.verdict == "allow"
    assert [(h.host, h.direction, h.verdict) for h in result.hops] == [
        ("h1", "egress", "allow"),
        ("h2", "ingress", "allow"),
    ]
    d = decided(result, 1)
    assert (d["what"], d["profile"], d["rule_index"], d["action"]) == (
        "profile",
        "kns.prod",
        0,
        "Allow",
    )
    ep = result.hops[1].endpoints[0]
    assert (ep.endpoint, ep.direction, ep.chain) == (
        "workload prod/h2-k8s-db-eth0",
        "ingress",
        "cali-tw-calidb",
    )
    assert ep.tiers == ()


DB_POLICY = {
    "kind": "NetworkPolicy",
    "metadata": {"name": "db-ingress", "namespace": "prod"},
    "spec": {"selector": "app == 'db'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'web'"},
         "destination": {"ports": [5432]}},
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [5432]},
         "source": {"namespaceSelector": "env == 'dev'", "selector": "app == 'tool'"}},
    ]},
}  # fmt: skip


@pytest.mark.parametrize(
    ("src", "port", "verdict", "rule"),
    [
        ("prod/web", 5432, "allow", 0),  # selector in the policy's namespace
        ("dev/tool", 5432, "allow", 1),  # namespaceSelector
        ("prod/web", 5433, "deny", None),  # end of tier
    ],
)
def test_network_policy_rules_and_end_of_tier(
    src: str, port: int, verdict: str, rule: int | None
) -> None:
    result = run(snapshot(*BASE, DB_POLICY), src, "prod/db", port=port)
    assert result.verdict == verdict
    d = decided(result, len(result.hops) - 1)
    if rule is None:
        assert (d["what"], d["tier"]) == ("end of tier", "default")
        assert d["action"] == "Deny"
        policy = result.hops[-1].endpoints[0].tiers[0][1][0]
        assert (policy.name, policy.reached, policy.decision) == ("prod/db-ingress", True, None)
    else:
        assert (d["policy"], d["tier"], d["rule_index"], d["action"]) == (
            "prod/db-ingress",
            "default",
            rule,
            "Allow",
        )
        assert "--dports 5432" in str(d["rule"])


def test_policies_that_do_not_select_the_endpoint_are_listed_in_order() -> None:
    web_only = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "web-only"},
        "spec": {"selector": "app == 'web'", "order": 10, "ingress": [{"action": "Allow"}]},
    }
    result = run(snapshot(*BASE, DB_POLICY, web_only), "prod/web", "prod/db", port=5432)
    ((tier, policies),) = result.hops[1].endpoints[0].tiers
    assert tier == "default"
    # web-only has an order, so it comes first; it does not select db: not evaluated.
    assert [(p.name, p.selected, p.reached) for p in policies] == [
        ("web-only", False, False),
        ("prod/db-ingress", True, True),
    ]
    assert to_json(result)["hops"][1]["endpoints"][0]["tiers"][0]["policies"][0] == {
        "name": "web-only",
        "selected": False,
        "reached": False,
    }


def test_named_port_and_egress_deny_on_source_host() -> None:
    egress = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "db-egress"},
        "spec": {"selector": "app == 'db'", "types": ["Egress"], "egress": [
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": ["http"]}},
            {"action": "Allow"},
        ]},
    }  # fmt: skip
    snap = snapshot(*BASE, egress)
    result = run(snap, "prod/db", "prod/web", port=8080)
    assert result.verdict == "deny"
    assert [h.verdict for h in result.hops] == ["deny", "allow"]
    d = decided(result, 0)
    assert (d["policy"], d["rule_index"], d["action"]) == ("db-egress", 0, "Deny")
    assert "--match-set cali40n:" in str(d["rule"])  # the named port's ip,port set
    # Port 8081 is not the named port: the second rule allows.
    other = run(snap, "prod/db", "prod/web", port=8081)
    assert other.verdict == "allow"
    assert decided(other, 0)["rule_index"] == 1


def test_tiers_pass_log_and_default_action() -> None:
    tier = {"kind": "Tier", "metadata": {"name": "security"}, "spec": {"order": 100}}
    quarantine = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "security.quarantine"},
        "spec": {"tier": "security", "selector": "all()", "types": ["Ingress"], "ingress": [
            {"action": "Log", "source": {"selector": "quarantine == 'true'"}},
            {"action": "Deny", "source": {"selector": "quarantine == 'true'"}},
            {"action": "Pass"},
        ]},
    }  # fmt: skip
    base = [*BASE[:4], wep("tool", "dev", "h2", "198.19.0.3/32", "calitool", quarantine="true")]
    result = run(snapshot(*base, tier, quarantine), "dev/tool", "prod/web")
    assert result.verdict == "deny"
    d = decided(result, 1)
    assert (d["tier"], d["policy"], d["rule_index"], d["action"]) == (
        "security",
        "security.quarantine",
        1,
        "Deny",
    )
    policy = result.hops[1].endpoints[0].tiers[0][1][0]
    assert policy.logged == (0,)
    # An unquarantined source passes to the (empty) default tier and on to the profile.
    passed = run(snapshot(*BASE, tier, quarantine), "prod/db", "prod/web")
    assert passed.verdict == "allow"
    ep = passed.hops[1].endpoints[0]
    assert ep.tiers[0][1][0].decision is not None
    assert ep.tiers[0][1][0].decision.action == "Pass"
    assert ep.decision is not None and ep.decision.profile == "kns.prod"
    # A Log-only tier: Deny at its end by default, on to the next tier with Pass.
    for default, verdict in (("Deny", "deny"), ("Pass", "allow")):
        audit = {"kind": "Tier", "metadata": {"name": "audit"},
                 "spec": {"order": 50, "defaultAction": default}}  # fmt: skip
        log = {"kind": "GlobalNetworkPolicy", "metadata": {"name": "audit.log"},
               "spec": {"tier": "audit", "selector": "all()", "ingress": [{"action": "Log"}]}}  # fmt: skip
        assert run(snapshot(*BASE, audit, log), "prod/db", "prod/web").verdict == verdict


def test_external_source_nets_and_network_sets() -> None:
    nets = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "from-partners"},
        "spec": {"selector": "app == 'web'", "types": ["Ingress"], "ingress": [
            {"action": "Allow", "source": {"nets": ["203.0.113.0/24"]}},
            {"action": "Allow", "source": {"selector": "role == 'partner'"}},
        ]},
    }  # fmt: skip
    gns = {
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "partners", "labels": {"role": "partner"}},
        "spec": {"nets": ["198.51.100.0/24"]},
    }
    snap = snapshot(*BASE, nets, gns)
    result = run(snap, "203.0.113.9", "prod/web")
    assert result.verdict == "allow"
    assert [h.direction for h in result.hops] == ["ingress"]  # external: no egress hop
    assert decided(result, 0)["rule_index"] == 0
    assert decided(run(snap, "198.51.100.7", "prod/web"), 0)["rule_index"] == 1
    denied = run(snap, "192.0.2.1", "prod/web")
    assert denied.verdict == "deny"
    # Workload to external: only the egress hop, allowed by the profile.
    out = run(snap, "prod/web", "192.0.2.1")
    assert (out.verdict, [h.direction for h in out.hops]) == ("allow", ["egress"])


def test_ipv6_and_icmp() -> None:
    policy = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "web-v"},
        "spec": {"selector": "app == 'web'", "ingress": [
            {"action": "Allow", "ipVersion": 4, "protocol": "ICMP"},
            {"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 128}},
        ]},
    }  # fmt: skip
    snap = snapshot(*BASE, wep("db6", "prod", "h2", "2001:db8::2/128", "calidb6"), policy)
    assert run(snap, "prod/db", "prod/web", ICMP, None).verdict == "allow"
    assert run(snap, "prod/db", "prod/web", TCP, 80).verdict == "deny"
    six = run(snap, "prod/db6", "2001:db8::1", ICMP6, None)
    assert six.verdict == "allow"
    assert decided(six, 1)["rule_index"] == 1  # rule 0 is IPv4 only: not rendered in v6


def test_same_host_verdict_is_one_walk() -> None:
    deny_in = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-tool", "namespace": "dev"},
        "spec": {"selector": "app == 'tool'", "types": ["Ingress"]},
    }
    result = run(snapshot(*BASE, deny_in), "prod/db", "dev/tool")
    assert result.verdict == "deny"
    assert [(h.host, h.verdict) for h in result.hops] == [("h2", "allow"), ("h2", "deny")]
    # A host endpoint on the uplink: the packet never crosses it, so it decides nothing.
    with_hep = snapshot(*BASE, hep("h2-eth0", "h2", "eth0"))
    hops = run(with_hep, "prod/db", "dev/tool").hops
    assert [decided(run(with_hep, "prod/db", "dev/tool"), i)["profile"] for i in (0, 1)] == [
        "kns.prod",
        "kns.dev",
    ]
    assert [[e.chain for e in h.endpoints] for h in hops] == [
        ["cali-fw-calidb"],
        ["cali-tw-calitool"],
    ]
    # Egress denied: the ingress side is still answered, walked on its own.
    deny_out = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "db-out", "namespace": "prod"},
        "spec": {"selector": "app == 'db'", "types": ["Egress"]},
    }
    denied = run(snapshot(*BASE, deny_out), "prod/db", "dev/tool")
    assert [(h.direction, h.verdict) for h in denied.hops] == [
        ("egress", "deny"),
        ("ingress", "allow"),
    ]
    assert denied.verdict == "deny"


def hep(name: str, node: str, iface: str, **labels: str) -> dict[str, Any]:
    return {
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": labels},
        "spec": {"node": node, "interfaceName": iface},
    }


@pytest.mark.parametrize("kind", ["applyOnForward", "preDNAT", "doNotTrack"])
def test_host_endpoint_policies_on_forwarded_traffic(kind: str) -> None:
    """A host endpoint on the uplink; a policy of each kind denies traffic from one network
    towards the workloads and allows the rest."""
    flags = {"applyOnForward": True, kind: True}
    policy = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "edge"},
        "spec": {"selector": "role == 'edge'", "types": ["Ingress"], **flags, "ingress": [
            {"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}},
            {"action": "Allow"},
        ]},
    }  # fmt: skip
    snap = snapshot(*BASE, hep("h1-eth0", "h1", "eth0", role="edge"), policy)
    result = run(snap, "192.0.2.5", "prod/web")
    assert result.verdict == "deny"
    d = decided(result, 0)
    assert (d["policy"], d["rule_index"], d["action"]) == ("edge", 0, "Deny")
    table = {"applyOnForward": "filter", "preDNAT": "mangle", "doNotTrack": "raw"}[kind]
    assert result.hops[0].endpoints[0].table == table
    assert result.hops[0].endpoints[0].endpoint == "host endpoint h1-eth0"
    allowed = run(snap, "198.51.100.5", "prod/web")
    assert allowed.verdict == "allow"


def test_json_shape() -> None:
    out = to_json(run(snapshot(*BASE, DB_POLICY), "prod/web", "prod/db", port=5432))
    assert out["verdict"] == "allow"
    hops = out["hops"]
    assert isinstance(hops, list)
    assert {k: hops[1][k] for k in ("host", "direction", "verdict")} == {
        "host": "h2",
        "direction": "ingress",
        "verdict": "allow",
    }
    assert hops[1]["decided_by"]["policy"] == "prod/db-ingress"


def test_walk_refuses_what_it_cannot_evaluate() -> None:
    chain = Chain("cali-x", (Rule(ANY._with("-m hashlimit --hashlimit 5"), Verdict("DROP")),))
    hook = {"filter": {"FORWARD": Hook("FORWARD", (Rule(action=Jump("cali-x")),))}}
    tables = Tables({"filter": {"cali-x": chain}}, hook, {})
    with pytest.raises(WalkError, match="hashlimit"):
        walk(tables, Packet(4, "198.19.0.1", "198.19.0.2", TCP), (("filter", "FORWARD"),))
