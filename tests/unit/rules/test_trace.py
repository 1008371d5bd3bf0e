"""Policy trace over many policy shapes: resources -> the real calc graph -> rendered chains
-> a packet walked through them; verdicts and the rule that decided. Also through the nat
table (floating IPs, hairpin, natOutgoing, the metadata DNAT) and anti-spoofing."""

from __future__ import annotations

from typing import Any

import pytest

from calico.ctl.trace_source import (
    EndError,
    Snapshot,
    address_end,
    hosts_of,
    source_override,
    workload_end,
)
from calico.model.codec import parse_resource
from calico.rules.config import RulesConfig
from calico.rules.model import ANY, DNAT, SNAT, Chain, Hook, Jump, Masquerade, Rule, Verdict
from calico.rules.packet_walk import FORWARD_PATH, Packet, Tables, WalkError, walk
from calico.rules.trace import End, Flow, HostInput, Trace, to_json, trace

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


def test_policies_sharing_a_selector_are_explained_through_their_shared_chain() -> None:
    """Two policies with db-ingress's selection sit in one group chain (rules/endpoints.py):
    the trace still reports each one and the rule that decided."""
    udp_only = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "db-udp", "namespace": "prod"},
        "spec": {"selector": "app == 'db'", "order": 1, "ingress": [
            {"action": "Allow", "protocol": "UDP"},
        ]},
    }  # fmt: skip
    deny = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "db-deny", "namespace": "prod"},
        "spec": {"selector": "app == 'db'", "order": 2, "ingress": [
            {"action": "Deny", "protocol": "TCP", "destination": {"ports": [5432]}},
        ]},
    }  # fmt: skip
    result = run(snapshot(*BASE, udp_only, deny), "prod/web", "prod/db", port=5432)
    ((_, policies),) = result.hops[1].endpoints[0].tiers
    assert [(p.name, p.selected, p.reached) for p in policies] == [
        ("prod/db-udp", True, True),
        ("prod/db-deny", True, True),
    ]
    assert result.verdict == "deny"
    assert (decided(result, 1)["policy"], decided(result, 1)["action"]) == ("prod/db-deny", "Deny")


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
    if kind == "doNotTrack":
        # Untracked in, but the workload's reply cannot be (raw sees it from the workload):
        # conntrack then meets a reply it never saw the packet of. Not modelled: refused.
        with pytest.raises(WalkError, match="reply"):
            run(snap, "198.51.100.5", "prod/web")
        return
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


# -- traffic to and from a host itself --------------------------------------------------

H1_V4 = "198.18.255.1"
NODES = [
    {"kind": "Node", "metadata": {"name": "h1"}, "spec": {"bgp": {"ipv4Address": f"{H1_V4}/30"}}},
    {"kind": "Node", "metadata": {"name": "h2"}, "spec": {"bgp": {"ipv4Address": "198.18.0.2/24"}}},
]
EGRESS_DENY_5000 = {
    "kind": "GlobalNetworkPolicy",
    "metadata": {"name": "web-egress"},
    "spec": {"selector": "app == 'web'", "types": ["Egress"], "egress": [
        {"action": "Deny", "protocol": "TCP", "destination": {"ports": [5000]}},
        {"action": "Allow"},
    ]},
}  # fmt: skip


def run_cfg(snap: Snapshot, src: str, dst: str, cfg: RulesConfig, **kw: Any) -> Trace:
    """`run` with one rule setting for every host."""
    ends = [
        address_end(snap, e) if e[0].isdigit() else workload_end(snap, e, 4) for e in (src, dst)
    ]
    inputs = {h: HostInput(snap.host_state(h), cfg, snap.uplink(h)) for h in hosts_of(ends)}
    proto = kw.get("proto", TCP)
    ported = proto != ICMP
    flow = Flow(
        ends[0],
        ends[1],
        proto,
        dst_port=kw.get("port", 5000) if ported else None,
        src_port=32768 if ported else None,
        icmp_type=None if ported else 8,
        icmp_code=None if ported else 0,
    )
    return trace(inputs, flow, snap.considered())


@pytest.mark.parametrize(
    ("action", "verdict", "what_action"),
    [("DROP", "deny", "Deny"), ("ACCEPT", "allow", "Allow"), ("RETURN", "allow", "Return")],
)
def test_workload_to_its_own_host(action: str, verdict: str, what_action: str) -> None:
    """INPUT from the workload's interface: its egress policy, then
    DefaultEndpointToHostAction; one hop, one walk."""
    snap = snapshot(*BASE, *NODES)
    cfg = RulesConfig(endpoint_to_host_action=action)
    result = run_cfg(snap, "prod/web", H1_V4, cfg)
    assert result.verdict == verdict
    assert [(h.host, h.direction, h.verdict) for h in result.hops] == [("h1", "egress", verdict)]
    d = decided(result, 0)
    assert (d["what"], d["action"], d["chain"]) == (
        "endpoint to host action",
        what_action,
        "cali-wl-to-host",
    )
    assert [e.chain for e in result.hops[0].endpoints] == ["cali-fw-caliweb"]
    # The workload's egress policy comes first: a deny there wins over Accept.
    denied = run_cfg(snapshot(*BASE, *NODES, EGRESS_DENY_5000), "prod/web", H1_V4, cfg)
    assert denied.verdict == "deny"
    assert (decided(denied, 0)["policy"], decided(denied, 0)["rule_index"]) == ("web-egress", 0)
    pinged = run_cfg(snapshot(*BASE, *NODES, EGRESS_DENY_5000), "prod/web", H1_V4, cfg, proto=ICMP)
    assert pinged.verdict == verdict


def hep_ips(name: str, node: str, iface: str, *ips: str, **labels: str) -> dict[str, Any]:
    doc = hep(name, node, iface, **labels)
    doc["spec"]["expectedIPs"] = list(ips)
    return doc


UPLINK_HEP = hep_ips("h1-eth1", "h1", "eth1", H1_V4, hep="uplink")


def host_policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": "hep == 'uplink'", **spec},
    }


def test_external_to_a_host_through_its_host_endpoint() -> None:
    """INPUT from the uplink: failsafe ports, then normal host endpoint policy."""
    snap = snapshot(*BASE, UPLINK_HEP)
    cfg = RulesConfig()
    no_policy = run_cfg(snap, "198.18.255.2", H1_V4, cfg, port=8080)
    assert no_policy.verdict == "deny"
    assert [(h.host, h.direction) for h in no_policy.hops] == [("h1", "ingress")]
    ep = no_policy.hops[0].endpoints[-1]
    assert (ep.endpoint, ep.table, ep.chain, ep.direction) == (
        "host endpoint h1-eth1",
        "filter",
        "cali-fh-eth1",
        "ingress",
    )
    assert decided(no_policy, 0)["what"] == "no profile matched"
    ssh = run_cfg(snap, "198.18.255.2", H1_V4, cfg, port=22)
    assert ssh.verdict == "allow"
    assert (decided(ssh, 0)["what"], decided(ssh, 0)["chain"]) == ("failsafe", "cali-failsafe-in")
    opened = snapshot(*BASE, UPLINK_HEP, host_policy("uplink-in", ingress=[
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}]))  # fmt: skip
    allowed = run_cfg(opened, "198.18.255.2", H1_V4, cfg, port=8080)
    assert allowed.verdict == "allow"
    assert (decided(allowed, 0)["policy"], decided(allowed, 0)["rule_index"]) == ("uplink-in", 0)
    assert run_cfg(opened, "198.18.255.2", H1_V4, cfg, proto=ICMP).verdict == "deny"
    # No host endpoint on the interface: the host is not policed.
    assert run_cfg(snapshot(*BASE, *NODES), "198.18.255.2", H1_V4, cfg).verdict == "allow"


@pytest.mark.parametrize(("kind", "table"), [("preDNAT", "mangle"), ("doNotTrack", "raw")])
def test_pre_dnat_and_untracked_policy_to_a_host(kind: str, table: str) -> None:
    flags = {kind: True, "applyOnForward": True}
    replies = [{"action": "Allow", "protocol": "TCP", "source": {"ports": [8080]}}]
    policy = host_policy("edge", **flags, ingress=[
        {"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}},
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}},
    ], egress=replies if kind == "doNotTrack" else [])  # fmt: skip
    snap = snapshot(*BASE, UPLINK_HEP, policy)
    denied = run_cfg(snap, "192.0.2.5", H1_V4, RulesConfig(), port=8080)
    assert denied.verdict == "deny"
    d = decided(denied, 0)
    assert (d["policy"], d["rule_index"], d["action"]) == ("edge", 0, "Deny")
    assert denied.hops[0].endpoints[0].table == table
    # Allowed there: accepted without normal policy (which would drop: it has no rule).
    allowed = run_cfg(snap, "198.51.100.5", H1_V4, RulesConfig(), port=8080)
    assert allowed.verdict == "allow"
    assert (decided(allowed, 0)["policy"], decided(allowed, 0)["rule_index"]) == ("edge", 1)
    assert [e.table for e in allowed.hops[0].endpoints] == [table]


def test_untracked_policy_must_let_the_reply_through() -> None:
    """Raw sees every packet: an untracked policy that drops the reply denies the hop (the
    reply's endpoint chain is listed, marked); one that lets it pass tracked is refused."""
    ingress = [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}]
    drop_reply = host_policy("edge", doNotTrack=True, applyOnForward=True, ingress=ingress,
                             egress=[{"action": "Deny"}])  # fmt: skip
    result = run_cfg(snapshot(*BASE, UPLINK_HEP, drop_reply), "198.51.100.5", H1_V4,
                     RulesConfig(), port=8080)  # fmt: skip
    assert result.verdict == "deny"
    d = decided(result, 0)
    assert (d["policy"], d["rule_index"], d["action"]) == ("edge", 0, "Deny")
    assert [(e.endpoint, e.table, e.chain) for e in result.hops[0].endpoints] == [
        ("host endpoint h1-eth1", "raw", "cali-fh-eth1"),
        ("host endpoint h1-eth1 (reply)", "raw", "cali-th-eth1"),
    ]
    # A tracked connection's reply is also stopped in raw by untracked egress policy.
    out_deny = host_policy("edge", doNotTrack=True, applyOnForward=True, types=["Egress"],
                           egress=[{"action": "Deny", "protocol": "TCP"}])  # fmt: skip
    normal_in = host_policy("in-8080", ingress=ingress)
    snap = snapshot(*BASE, UPLINK_HEP, out_deny, normal_in)
    tracked = run_cfg(snap, "198.51.100.5", H1_V4, RulesConfig(), port=8080)
    assert tracked.verdict == "deny"
    assert (decided(tracked, 0)["policy"], decided(tracked, 0)["action"]) == ("edge", "Deny")
    # ... but not a failsafe port's: raw's failsafe chains let those replies out.
    assert run_cfg(snap, "198.51.100.5", H1_V4, RulesConfig(), port=22).verdict == "allow"
    ingress_only = host_policy("edge", doNotTrack=True, applyOnForward=True, ingress=ingress)
    with pytest.raises(WalkError, match="reply"):
        run_cfg(snapshot(*BASE, UPLINK_HEP, ingress_only), "198.51.100.5", H1_V4, RulesConfig(),
                port=8080)  # fmt: skip


def test_host_to_an_external_and_to_workloads() -> None:
    """OUTPUT to the uplink: failsafe outbound, then egress host endpoint policy; to a local
    workload: not policed; to a remote workload: that workload's ingress as usual."""
    snap = snapshot(*BASE, *NODES, UPLINK_HEP)
    cfg = RulesConfig()
    etcd = run_cfg(snap, H1_V4, "198.18.255.2", cfg, port=2379)
    assert etcd.verdict == "allow"
    assert [(h.host, h.direction) for h in etcd.hops] == [("h1", "egress")]
    assert (decided(etcd, 0)["what"], decided(etcd, 0)["chain"]) == (
        "failsafe",
        "cali-failsafe-out",
    )
    other = run_cfg(snap, H1_V4, "198.18.255.2", cfg, port=8081)
    assert other.verdict == "deny"
    assert other.hops[0].endpoints[-1].chain == "cali-th-eth1"
    local = run_cfg(snap, H1_V4, "prod/web", cfg, port=8081)
    assert (local.verdict, [h.direction for h in local.hops]) == ("allow", ["egress"])
    assert local.hops[0].endpoints == () and local.hops[0].decision is None
    deny_db = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "db-in", "namespace": "prod"},
        "spec": {"selector": "app == 'db'", "types": ["Ingress"]},
    }
    remote = run_cfg(snapshot(*BASE, *NODES, deny_db), H1_V4, "prod/db", cfg, port=8081)
    assert [(h.host, h.direction, h.verdict) for h in remote.hops] == [
        ("h1", "egress", "allow"),
        ("h2", "ingress", "deny"),
    ]


def test_remote_workload_to_a_host() -> None:
    """Egress from the workload on h2 (FORWARD), then h1's INPUT through its host endpoint."""
    snap = snapshot(*BASE, *NODES, UPLINK_HEP)
    result = run_cfg(snap, "prod/db", H1_V4, RulesConfig(), port=22)
    assert [(h.host, h.direction, h.verdict) for h in result.hops] == [
        ("h2", "egress", "allow"),
        ("h1", "ingress", "allow"),
    ]
    assert decided(result, 1)["what"] == "failsafe"
    text = to_json(result)
    assert text["verdict"] == "allow"


def test_host_to_another_host() -> None:
    """OUTPUT on the source host, INPUT on the destination's: each its own host endpoint."""
    h2_hep = hep_ips("h2-eth0", "h2", "eth0", "198.18.0.2", hep="uplink")
    snap = snapshot(*BASE, *NODES, UPLINK_HEP, h2_hep)
    result = run_cfg(snap, H1_V4, "198.18.0.2", RulesConfig(), port=22)
    assert [(h.host, h.direction, h.verdict) for h in result.hops] == [
        ("h1", "egress", "deny"),  # 22 is not an outbound failsafe port
        ("h2", "ingress", "allow"),  # ... but an inbound one
    ]
    assert result.verdict == "deny"
    assert [e.chain for e in result.hops[0].endpoints] == ["cali-th-eth1"]
    assert [e.chain for e in result.hops[1].endpoints] == ["cali-fh-eth0"]


# -- the nat table ------------------------------------------------------------------------

FIP, FIP6 = "198.18.7.1", "2001:db8:7::1"
OUTSIDE = "198.18.255.2"
FLOATING = RulesConfig(floating_ips=True)


def with_nats(doc: dict[str, Any], *pairs: tuple[str, str]) -> dict[str, Any]:
    doc["spec"]["ipNATs"] = [{"internalIP": i, "externalIP": e} for i, e in pairs]
    return doc


def web_with_fip() -> dict[str, Any]:
    return with_nats(wep("web", "prod", "h1", "198.19.0.1/32", "caliweb", app="web"),
                     ("198.19.0.1", FIP))  # fmt: skip


def pool(name: str, cidr: str, nat_outgoing: bool) -> dict[str, Any]:
    return {"kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "natOutgoing": nat_outgoing}}  # fmt: skip


def ingress_policy(name: str, selector: str, **rule: Any) -> dict[str, Any]:
    return {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ingress": [{"action": "Allow", **rule}]},
    }


def ends(snap: Snapshot, src: str, dst: str, spoof: str | None = None) -> tuple[End, End]:
    def end(text: str) -> End:
        if "/" in text and ":" not in text:
            return workload_end(snap, text, 6 if spoof and ":" in spoof else None)
        return address_end(snap, text)

    src_end = end(src)
    return (source_override(src_end, spoof) if spoof else src_end), end(dst)


def run_nat(
    snap: Snapshot,
    src: str,
    dst: str,
    cfg: RulesConfig = FLOATING,
    proto: int = TCP,
    port: int = 8080,
    spoof: str | None = None,
) -> Trace:
    a, b = ends(snap, src, dst, spoof)
    inputs = {h: HostInput(snap.host_state(h), cfg, snap.uplink(h)) for h in hosts_of((a, b))}
    ported = proto != ICMP
    flow = Flow(
        a,
        b,
        proto,
        dst_port=port if ported else None,
        src_port=32768 if ported else None,
        icmp_type=None if ported else 8,
        icmp_code=None if ported else 0,
    )
    return trace(inputs, flow, snap.considered())


def nat_of(result: Trace, hop: int) -> list[tuple[str, str, str, str | None]]:
    return [(n.kind, n.field, n.original, n.translated) for n in result.hops[hop].nat]


# -- floating IPs ---------------------------------------------------------------------------


def test_external_to_a_floating_ip_is_dnated_then_policed_as_the_workload() -> None:
    """nat PREROUTING translates the floating IP; ingress policy then sees the workload's
    own address (a rule for the internal address matches, one for the floating IP not)."""
    internal = ingress_policy("to-internal", "app == 'web'", protocol="TCP",
                              destination={"nets": ["198.19.0.1/32"], "ports": [8080]})  # fmt: skip
    snap = snapshot(*BASE[:2], web_with_fip(), internal)
    assert address_end(snap, FIP).workload == workload_end(snap, "prod/web", None).workload
    result = run_nat(snap, OUTSIDE, FIP)
    assert result.verdict == "allow"
    assert [(h.host, h.direction) for h in result.hops] == [("h1", "ingress")]
    assert nat_of(result, 0) == [("DNAT", "destination", FIP, "198.19.0.1")]
    (nat,) = result.hops[0].nat
    assert (nat.chain, nat.rule) == (
        "cali-fip-dnat",
        f"-d {FIP} -j DNAT --to-destination 198.19.0.1",
    )
    assert nat.rule_id is not None
    d = decided(result, 0)
    assert (d["policy"], d["rule_index"]) == ("to-internal", 0)
    by_fip = ingress_policy("to-internal", "app == 'web'", protocol="TCP",
                            destination={"nets": [f"{FIP}/32"], "ports": [8080]})  # fmt: skip
    denied = run_nat(snapshot(*BASE[:2], web_with_fip(), by_fip), OUTSIDE, FIP)
    assert denied.verdict == "deny"
    assert decided(denied, 0)["what"] == "end of tier"
    out = to_json(result)
    hop = out["hops"][0]  # type: ignore[index]
    assert hop["nat"][0]["original"] == FIP and hop["nat"][0]["translated"] == "198.19.0.1"


@pytest.mark.parametrize(("kind", "sees"), [("preDNAT", FIP), ("applyOnForward", "198.19.0.1")])
def test_host_endpoint_policy_sees_the_floating_ip_before_dnat_only(kind: str, sees: str) -> None:
    """preDNAT policy (mangle) runs before nat PREROUTING: it sees the floating IP;
    applyOnForward policy (filter) runs after: it sees the workload's own address."""

    def deny_to(address: str) -> dict[str, Any]:
        return {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "edge"},
            "spec": {"selector": "role == 'edge'", "types": ["Ingress"], "applyOnForward": True,
                     kind: True, "ingress": [
                {"action": "Deny", "destination": {"nets": [f"{address}/32"]}},
                {"action": "Allow"}]},
        }  # fmt: skip

    edge = hep("h1-eth0", "h1", "eth0", role="edge")
    other = FIP if sees != FIP else "198.19.0.1"
    unseen = snapshot(*BASE[:2], web_with_fip(), edge, deny_to(other))
    assert run_nat(unseen, OUTSIDE, FIP).verdict == "allow"
    result = run_nat(snapshot(*BASE[:2], web_with_fip(), edge, deny_to(sees)), OUTSIDE, FIP)
    assert result.verdict == "deny"
    d = decided(result, 0)
    assert (d["policy"], d["rule_index"], d["table"]) == (
        "edge",
        0,
        "mangle" if kind == "preDNAT" else "filter",
    )


def test_a_floating_ip_its_host_does_not_translate_is_refused() -> None:
    """FloatingIPs Disabled (and not an OpenStack endpoint): no DNAT, no route: say so."""
    snap = snapshot(*BASE[:2], web_with_fip())
    with pytest.raises(WalkError, match="FloatingIPs Enabled"):
        run_nat(snap, OUTSIDE, FIP, cfg=RulesConfig())
    openstack = web_with_fip()
    openstack["spec"]["orchestrator"] = "openstack"
    assert (
        run_nat(snapshot(*BASE[:2], openstack), OUTSIDE, FIP, cfg=RulesConfig()).verdict == "allow"
    )


def test_two_workloads_claiming_a_floating_ip_are_refused() -> None:
    other = with_nats(wep("db", "prod", "h2", "198.19.0.2/32", "calidb"), ("198.19.0.2", FIP))
    with pytest.raises(EndError, match="several workload endpoints"):
        address_end(snapshot(*BASE[:2], web_with_fip(), other), FIP)


def test_remote_workload_to_a_floating_ip() -> None:
    """The source's host routes the floating IP untranslated (its egress policy sees it);
    the destination's host translates it."""
    egress_to_fip = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "db-out"},
        "spec": {"selector": "app == 'db'", "types": ["Egress"],
                 "egress": [{"action": "Deny", "destination": {"nets": [f"{FIP}/32"]}}]},
    }  # fmt: skip
    db = wep("db", "prod", "h2", "198.19.0.2/32", "calidb", app="db")
    snap = snapshot(*BASE[:2], web_with_fip(), db)
    result = run_nat(snap, "prod/db", FIP)
    assert result.verdict == "allow"
    assert [(h.host, h.direction) for h in result.hops] == [("h2", "egress"), ("h1", "ingress")]
    assert nat_of(result, 0) == []
    assert nat_of(result, 1) == [("DNAT", "destination", FIP, "198.19.0.1")]
    denied = run_nat(snapshot(*BASE[:2], web_with_fip(), db, egress_to_fip), "prod/db", FIP)
    assert [h.verdict for h in denied.hops] == ["deny", "allow"]
    assert decided(denied, 0)["policy"] == "db-out"


def test_local_workload_to_a_floating_ip_is_translated_before_its_egress_policy() -> None:
    """On one host the DNAT comes first (nat PREROUTING), so egress policy sees the
    workload's own address: a deny for the floating IP does not apply."""
    deny_fip = {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "tool-out"},
        "spec": {"selector": "app == 'tool'", "types": ["Egress"], "egress": [
            {"action": "Deny", "destination": {"nets": [f"{FIP}/32"]}}, {"action": "Allow"}]},
    }  # fmt: skip
    tool = wep("tool", "prod", "h1", "198.19.0.3/32", "calitool", app="tool")
    result = run_nat(snapshot(*BASE[:2], web_with_fip(), tool, deny_fip), "prod/tool", FIP)
    assert result.verdict == "allow"
    assert [(h.direction, h.verdict) for h in result.hops] == [
        ("egress", "allow"),
        ("ingress", "allow"),
    ]
    assert nat_of(result, 0) == [("DNAT", "destination", FIP, "198.19.0.1")]
    assert nat_of(result, 1) == []


def test_hairpin_through_its_own_floating_ip() -> None:
    """DNAT to itself, then cali-fip-snat makes the source the floating IP."""
    result = run_nat(snapshot(*BASE[:2], web_with_fip()), "prod/web", FIP, proto=UDP, port=9999)
    assert result.verdict == "allow"
    assert nat_of(result, 0) == [
        ("DNAT", "destination", FIP, "198.19.0.1"),
        ("SNAT", "source", "198.19.0.1", FIP),
    ]
    assert result.hops[0].nat[1].chain == "cali-fip-snat"


def test_the_host_to_its_workloads_floating_ip() -> None:
    """nat OUTPUT translates the host's own traffic too; the host to its workload is not
    policed."""
    node = {"kind": "Node", "metadata": {"name": "h1"},
            "spec": {"bgp": {"ipv4Address": "198.18.255.1/30"}}}  # fmt: skip
    result = run_nat(snapshot(*BASE[:2], web_with_fip(), node), "198.18.255.1", FIP)
    assert result.verdict == "allow"
    assert nat_of(result, 0) == [("DNAT", "destination", FIP, "198.19.0.1")]


def test_ipv6_floating_ip() -> None:
    web6 = with_nats(
        wep("web6", "prod", "h1", "2001:db8::1/128", "caliweb6"), ("2001:db8::1", FIP6)
    )
    result = run_nat(snapshot(*BASE[:2], web6), "2001:db8:ff::2", FIP6)
    assert result.verdict == "allow"
    assert nat_of(result, 0) == [("DNAT", "destination", FIP6, "2001:db8::1")]


def test_metadata_dnat_is_refused() -> None:
    """OpenStack's 169.254.169.254:80 DNAT sends the packet somewhere the trace does not
    follow: refused, naming the rule and what to trace instead."""
    cfg = RulesConfig(openstack_special_cases=True, metadata_addr="198.18.255.1")
    with pytest.raises(WalkError, match=r"169\.254\.169\.254:80 to 198\.18\.255\.1:8775"):
        run_nat(snapshot(*BASE), "prod/web", "169.254.169.254", cfg=cfg, port=80)
    assert (
        run_nat(snapshot(*BASE), "prod/web", "169.254.169.254", cfg=cfg, port=81).verdict == "allow"
    )


# -- natOutgoing ------------------------------------------------------------------------------

POOLS = [pool("masq", "198.19.0.0/24", True), pool("plain", "198.19.1.0/24", False)]


def test_nat_outgoing_masquerades_leaving_the_pools_only() -> None:
    plain = wep("plain", "prod", "h1", "198.19.1.1/32", "caliplain")
    snap = snapshot(*BASE, *POOLS, plain)
    result = run_nat(snap, "prod/web", OUTSIDE)
    assert result.verdict == "allow"
    assert nat_of(result, 0) == [("MASQUERADE", "source", "198.19.0.1", None)]
    assert result.hops[0].nat[0].chain == "cali-nat-outgoing"
    assert nat_of(run_nat(snap, "prod/plain", OUTSIDE), 0) == []  # its pool has no natOutgoing
    assert nat_of(run_nat(snap, "prod/web", "198.19.1.1"), 0) == []  # inside the pools
    assert nat_of(run_nat(snapshot(*BASE, plain), "prod/web", OUTSIDE), 0) == []  # no pool at all
    fixed = run_nat(snap, "prod/web", OUTSIDE, cfg=RulesConfig(nat_outgoing_address="198.18.0.99"))
    assert nat_of(fixed, 0) == [("SNAT", "source", "198.19.0.1", "198.18.0.99")]


def test_nat_outgoing_then_a_rule_that_reads_the_masqueraded_source_is_refused() -> None:
    """To another host: its host endpoint policy on the source address cannot be answered
    (MASQUERADE picks the outgoing interface's address); one that does not read it can."""
    node2 = {"kind": "Node", "metadata": {"name": "h2"},
             "spec": {"bgp": {"ipv4Address": "198.18.0.2/24"}}}  # fmt: skip
    h2_hep = hep("h2-eth0", "h2", "eth0", hep="h2")
    h2_hep["spec"]["expectedIPs"] = ["198.18.0.2"]
    by_source = ingress_policy("h2-in", "hep == 'h2'", protocol="TCP",
                               source={"nets": ["198.18.0.0/24"]})  # fmt: skip
    snap = snapshot(*BASE, *POOLS, node2, h2_hep, by_source)
    with pytest.raises(WalkError, match=r"MASQUERADE .* outgoing interface's"):
        run_nat(snap, "prod/web", "198.18.0.2")
    by_port = ingress_policy("h2-in", "hep == 'h2'", protocol="TCP", destination={"ports": [8080]})
    result = run_nat(snapshot(*BASE, *POOLS, node2, h2_hep, by_port), "prod/web", "198.18.0.2")
    assert result.verdict == "allow"
    assert nat_of(result, 0) == [("MASQUERADE", "source", "198.19.0.1", None)]


# -- anti-spoofing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoof", "dst"),
    [("198.19.0.99", "prod/db"), ("198.19.0.3", "prod/db"), ("2001:db8::99", "2001:db8::5")],
    ids=["foreign", "another-workload", "ipv6"],
)
def test_spoofed_source_is_dropped_by_the_reverse_path_check(spoof: str, dst: str) -> None:
    result = run_nat(snapshot(*BASE), "prod/web6" if ":" in spoof else "prod/web", dst, spoof=spoof)
    assert result.verdict == "deny"
    assert (result.hops[0].host, result.hops[0].direction, result.hops[0].verdict) == (
        "h1",
        "egress",
        "deny",
    )
    d = decided(result, 0)
    assert (d["what"], d["action"], d["table"], d["chain"]) == (
        "anti-spoofing",
        "Deny",
        "raw",
        "cali-PREROUTING",
    )
    assert "-m rpfilter --invert" in str(d["rule"]) and d["rule_id"]
    assert result.hops[0].endpoints == ()  # dropped in raw, before any endpoint chain


def test_allowed_spoofed_prefix_and_own_floating_ip_pass() -> None:
    web = wep("web", "prod", "h1", "198.19.0.1/32", "caliweb", app="web")
    web["spec"]["allowSpoofedSourcePrefixes"] = ["198.19.0.96/30"]
    snap = snapshot(*BASE[:2], web, BASE[3])
    assert run_nat(snap, "prod/web", "prod/db", spoof="198.19.0.99").verdict == "allow"
    assert run_nat(snap, "prod/web", "prod/db", spoof="198.19.0.95").verdict == "deny"
    # A workload's floating IP routes to it, so the reverse-path check passes.
    assert run_nat(snapshot(*BASE[:2], web_with_fip(), BASE[3]), "prod/web", "prod/db",
               spoof=FIP).verdict == "allow"  # fmt: skip


def test_spoofed_source_between_two_local_workloads() -> None:
    tool = wep("tool", "prod", "h1", "198.19.0.3/32", "calitool", app="tool")
    snap = snapshot(*BASE, tool)
    result = run_nat(snap, "prod/web", "prod/tool", spoof="198.19.0.99")
    assert result.verdict == "deny"
    assert [(h.direction, h.verdict) for h in result.hops] == [
        ("egress", "deny"),
        ("ingress", "allow"),  # asked alone: its ingress would allow
    ]
    assert decided(result, 0)["what"] == "anti-spoofing"


# -- the walk -------------------------------------------------------------------------------


def nat_tables(*rules: Rule) -> Tables:
    hooks = {"nat": {"PREROUTING": Hook("PREROUTING", (Rule(action=Jump("cali-x")),)),
                     "POSTROUTING": Hook("POSTROUTING", rules)},
             "filter": {"FORWARD": Hook("FORWARD", (
                 Rule(ANY.ct_state("DNAT"), Verdict("DROP")),))}}  # fmt: skip
    chain = Chain("cali-x", (Rule(ANY.dst_net("198.18.7.1"), DNAT("198.19.0.1:80")),))
    return Tables({"nat": {"cali-x": chain}}, hooks, {})


def test_walk_translates_and_conntrack_state_follows() -> None:
    packet = Packet(4, OUTSIDE, FIP, TCP, src_port=1000, dst_port=8080)
    out = walk(nat_tables(), packet, FORWARD_PATH)
    assert (out.packet.dst, out.packet.dst_port, out.packet.dnat) == ("198.19.0.1", 80, True)
    assert out.verdict == "DROP"  # ctstate DNAT matched in filter
    assert [(t.kind, t.original, t.translated) for t in out.translations] == [
        ("DNAT", f"{FIP}:8080", "198.19.0.1:80")
    ]
    untracked = walk(nat_tables(), Packet(4, OUTSIDE, FIP, TCP, untracked=True), FORWARD_PATH)
    assert (untracked.packet.dst, untracked.translations) == (FIP, ())


def test_walk_refuses_to_read_what_a_nat_left_unknown() -> None:
    later = Rule(ANY.src_net("198.18.0.0/24"), Verdict("ACCEPT"))
    tables = nat_tables(Rule(action=Masquerade(random_fully=True)), later)
    packet = Packet(4, "198.19.0.1", OUTSIDE, TCP, src_port=1000, dst_port=8080)
    out = walk(tables, packet, (("nat", "POSTROUTING"),))
    assert [(t.kind, t.translated) for t in out.translations] == [("MASQUERADE", None)]
    with pytest.raises(WalkError, match="source address after MASQUERADE"):
        out.packet.known("src")
    with pytest.raises(WalkError, match="source port after MASQUERADE"):
        out.packet.known("src_port")
    kept = walk(nat_tables(Rule(action=SNAT("198.18.0.9"))), packet, (("nat", "POSTROUTING"),))
    assert (kept.packet.known("src"), kept.packet.known("src_port")) == ("198.18.0.9", 1000)
