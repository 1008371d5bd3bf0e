"""Whole-graph scenarios: resources in, dataplane messages out (pure, no I/O)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from calico.calc import messages as m
from calico.calc.graph import CalcGraph
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.endpoints import workload_endpoint_name
from calico.model.keys import key_of
from calico.model.sync import SyncStatus
from calico.selector import parse as parse_selector

from .dataplane_model import ModelDataplane

HOST = "host-1"


def res(
    kind: str, name: str, spec: dict[str, Any] | None = None, ns: str | None = None, **labels: str
) -> Resource:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = {k.replace("__", "/").replace("_", "-"): v for k, v in labels.items()}
    doc: dict[str, Any] = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta}
    if spec is not None:
        doc["spec"] = spec
    return parse_resource(doc)


def wep(
    name: str,
    ip: str,
    node: str = HOST,
    ns: str = "shop",
    profiles: tuple[str, ...] = (),
    ports: list[dict[str, Any]] | None = None,
    **labels: str,
) -> Resource:
    spec: dict[str, Any] = {
        "node": node, "orchestrator": "k8s", "pod": name, "endpoint": "eth0",
        "interfaceName": f"cali{name}"[:15], "ipNetworks": [ip], "profiles": list(profiles),
    }  # fmt: skip
    if ports:
        spec["ports"] = ports
    meta: dict[str, Any] = {"namespace": ns, "labels": labels}
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": meta,
        "spec": spec,
    }
    return parse_resource(doc)


def gnp(name: str, spec: dict[str, Any]) -> Resource:
    return res("GlobalNetworkPolicy", name, spec)


class Harness:
    def __init__(self) -> None:
        self.dp = ModelDataplane()
        self.graph = CalcGraph(HOST, self.dp)
        self.graph.on_status(SyncStatus.IN_SYNC)

    def put(self, *resources: Resource) -> None:
        self.graph.on_updates([(key_of(r), r) for r in resources])

    def delete(self, *resources: Resource) -> None:
        self.graph.on_updates([(key_of(r), None) for r in resources])

    def wep(self, name: str, ns: str = "shop") -> m.WorkloadEndpoint:
        return self.dp.weps[m.WorkloadEndpointID(ns, name)]

    def members(self, rule: m.ParsedRule, field: str = "src_ipset_ids") -> set[str]:
        (set_id,) = getattr(rule, field)
        return self.dp.ipsets[set_id]

    def assert_no_leaks(self) -> None:
        assert set(self.dp.ipsets) == self.dp.used_sets()


def wep_name(pod: str) -> str:
    return workload_endpoint_name(HOST, "k8s", pod, "eth0")


def test_in_sync_is_sent_once_after_the_snapshot() -> None:
    dp = ModelDataplane()
    graph = CalcGraph(HOST, dp)
    graph.on_updates([(key_of(r), r) for r in [wep("a", "198.19.0.1/32")]])
    assert not dp.in_sync
    graph.on_status(SyncStatus.IN_SYNC)
    graph.on_status(SyncStatus.RESYNC)
    graph.on_status(SyncStatus.IN_SYNC)
    assert sum(isinstance(msg, m.InSync) for b in dp.batches for msg in b) == 1


def test_policy_with_selector_rule_builds_ipset_and_tiers() -> None:
    h = Harness()
    policy = gnp(
        "allow-db",
        {
            "selector": "app == 'web'",
            "ingress": [{"action": "Allow", "source": {"selector": "role == 'db'"}}],
        },
    )
    h.put(
        wep("web", "198.19.0.1/32", app="web"),
        wep("db1", "198.19.1.1/32", node="host-2", role="db"),
        wep("db2", "198.19.1.2/32", node="host-3", role="db"),
        wep("other", "198.19.1.3/32", node="host-2", role="cache"),
        policy,
    )
    pid = m.PolicyID("default", "allow-db")
    assert set(h.dp.policies) == {pid}
    (rule,) = h.dp.policies[pid].inbound_rules
    assert h.members(rule) == {"198.19.1.1/32", "198.19.1.2/32"}
    (tier,) = h.wep(wep_name("web")).tiers
    web = parse_selector("app == 'web'").unique_id()  # a workload's tiers carry selections
    assert tier == m.TierInfo("default", m.Action.DENY, (pid,), (), (web,), ())
    assert set(h.dp.weps) == {m.WorkloadEndpointID("shop", wep_name("web"))}  # only local ones
    h.put(wep("db2", "198.19.1.2/32", node="host-3", role="gone"))
    assert h.members(rule) == {"198.19.1.1/32"}
    h.delete(policy)
    assert h.dp.policies == {} and h.dp.ipsets == {}
    assert h.wep(wep_name("web")).tiers == ()


def test_policy_selecting_no_local_endpoint_is_not_rendered() -> None:
    h = Harness()
    h.put(
        wep("a", "198.19.0.1/32", node="host-2", app="web"),
        gnp(
            "p",
            {
                "selector": "app == 'web'",
                "ingress": [{"action": "Allow", "source": {"selector": "all()"}}],
            },
        ),
    )
    assert h.dp.policies == {} and h.dp.ipsets == {}
    h.put(wep("b", "198.19.0.2/32", app="web"))
    assert set(h.dp.policies) == {m.PolicyID("default", "p")}
    (rule,) = h.dp.policies[m.PolicyID("default", "p")].inbound_rules
    assert h.members(rule) == {"198.19.0.1/32", "198.19.0.2/32"}


def test_missing_profile_fails_closed_and_existing_one_is_sent() -> None:
    h = Harness()
    h.put(wep("a", "198.19.0.1/32", profiles=("kns.shop",)))
    assert h.dp.profiles["kns.shop"].inbound_rules == (m.ParsedRule(m.Action.DENY),)
    h.put(
        res(
            "Profile",
            "kns.shop",
            {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]},
        )
    )
    assert h.dp.profiles["kns.shop"].inbound_rules == (m.ParsedRule(m.Action.ALLOW),)
    h.delete(wep("a", "198.19.0.1/32", profiles=("kns.shop",)))
    assert h.dp.profiles == {} and h.dp.weps == {}


def test_tier_and_policy_order_types_and_pass() -> None:
    h = Harness()
    h.put(
        res("Tier", "security", {"order": 10, "defaultAction": "Pass"}),
        res("Tier", "late", {}),
        gnp(
            "security.b",
            {"tier": "security", "order": 5, "selector": "all()", "types": ["Ingress", "Egress"]},
        ),
        gnp("security.a", {"tier": "security", "order": 5, "selector": "all()"}),
        gnp(
            "security.first",
            {"tier": "security", "order": 1, "selector": "all()", "egress": [{"action": "Allow"}]},
        ),
        gnp("late.x", {"tier": "late", "selector": "all()"}),
        gnp("d", {"selector": "all()"}),
        wep("a", "198.19.0.1/32"),
    )
    security, default, late = h.wep(wep_name("a")).tiers
    assert security.name == "security" and security.default_action is m.Action.PASS
    assert [p.name for p in security.ingress_policies] == ["security.a", "security.b"]
    assert [p.name for p in security.egress_policies] == ["security.first", "security.b"]
    assert (default.name, default.default_action) == ("default", m.Action.DENY)
    assert late.name == "late"
    h.put(res("Tier", "late", {"order": 1}))
    assert [t.name for t in h.wep(wep_name("a")).tiers] == ["late", "security", "default"]


def test_network_policy_is_scoped_to_its_namespace() -> None:
    h = Harness()
    np = res(
        "NetworkPolicy",
        "np",
        {
            "selector": "all()",
            "ingress": [{"action": "Allow", "source": {"selector": "app == 'x'"}}],
        },
        ns="shop",
    )
    h.put(
        np,
        wep("in-shop", "198.19.0.1/32", ns="shop"),
        wep("in-bank", "198.19.0.2/32", ns="bank"),
        wep("x-shop", "198.19.1.1/32", node="host-2", ns="shop", app="x"),
        wep("x-bank", "198.19.1.2/32", node="host-2", ns="bank", app="x"),
    )
    pid = m.PolicyID("default", "np", "shop")
    assert h.wep(wep_name("in-shop"), "shop").tiers[0].ingress_policies == (pid,)
    assert h.wep(wep_name("in-bank"), "bank").tiers == ()
    (rule,) = h.dp.policies[pid].inbound_rules
    assert h.members(rule) == {"198.19.1.1/32"}


def test_namespace_selector_uses_profile_labels_and_global() -> None:
    h = Harness()
    rule_ns = {"action": "Allow", "source": {"namespaceSelector": "team == 'blue'"}}
    rule_global = {
        "action": "Allow",
        "source": {"namespaceSelector": "global()", "selector": "role == 'mon'"},
    }
    h.put(
        res(
            "Profile",
            "kns.shop",
            {"labelsToApply": {"pcns.team": "blue", "pcns.projectcalico.org/name": "shop"}},
        ),
        res("Profile", "kns.bank", {"labelsToApply": {"pcns.team": "red"}}),
        wep("a", "198.19.0.1/32", ns="shop", profiles=("kns.shop",)),
        wep("b", "198.19.1.1/32", node="host-2", ns="bank", profiles=("kns.bank",), role="mon"),
        res("GlobalNetworkSet", "mon", {"nets": ["198.18.200.0/24"]}, role="mon"),
        res("NetworkSet", "ns-set", {"nets": ["198.18.201.0/24"]}, ns="shop", role="mon"),
        gnp("p", {"selector": "all()", "ingress": [rule_ns, rule_global]}),
    )
    first, second = h.dp.policies[m.PolicyID("default", "p")].inbound_rules
    assert h.members(first) == {"198.19.0.1/32", "198.18.201.0/24"}  # shop WEP and shop netset
    assert h.members(second) == {"198.18.200.0/24"}  # only the non-namespaced set
    h.put(res("Profile", "kns.bank", {"labelsToApply": {"pcns.team": "blue"}}))
    assert h.members(first) == {"198.19.0.1/32", "198.19.1.1/32", "198.18.201.0/24"}
    h.assert_no_leaks()


def test_nets_and_named_ports() -> None:
    h = Harness()
    ports = [{"name": "http", "protocol": "TCP", "port": 8080}]
    rule = {
        "action": "Allow",
        "protocol": "TCP",
        "source": {"nets": ["198.18.0.0/16", "0.0.0.0/0"], "notNets": ["198.18.9.0/24"]},
        "destination": {"ports": [443, "1000:2000", "http"]},
    }
    h.put(
        wep("a", "198.19.0.1/32", ports=ports),
        wep("b", "198.19.1.1/32", node="host-2", ports=ports),
        gnp("p", {"selector": "all()", "ingress": [rule]}),
    )
    (parsed,) = h.dp.policies[m.PolicyID("default", "p")].inbound_rules
    assert h.members(parsed) == {"198.18.0.0/16", "0.0.0.0/1", "128.0.0.0/1"}
    assert h.members(parsed, "not_src_ipset_ids") == {"198.18.9.0/24"}
    assert parsed.dst_ports == (m.PortRange(443, 443), m.PortRange(1000, 2000))
    assert h.members(parsed, "dst_named_port_ipset_ids") == {
        "198.19.0.1,tcp:8080",
        "198.19.1.1,tcp:8080",
    }


def test_host_endpoint_tier_groups() -> None:
    h = Harness()
    h.put(
        res(
            "HostEndpoint",
            "eth0",
            {"node": HOST, "interfaceName": "eth0", "expectedIPs": ["198.18.0.11"]},
            role="host",
        ),
        gnp(
            "untracked",
            {
                "selector": "role == 'host'",
                "doNotTrack": True,
                "applyOnForward": True,
                "ingress": [{"action": "Allow"}],
            },
        ),
        gnp(
            "prednat",
            {
                "selector": "role == 'host'",
                "preDNAT": True,
                "applyOnForward": True,
                "ingress": [{"action": "Deny"}],
            },
        ),
        gnp("fwd", {"selector": "role == 'host'", "applyOnForward": True}),
        gnp("normal", {"selector": "role == 'host'"}),
    )
    hep = h.dp.heps[m.HostEndpointID("eth0")]
    assert hep.interface_name == "eth0" and hep.expected_ipv4_addrs == ("198.18.0.11",)
    assert [p.name for p in hep.tiers[0].ingress_policies] == ["fwd", "normal"]
    assert [p.name for p in hep.untracked_tiers[0].ingress_policies] == ["untracked"]
    assert [p.name for p in hep.pre_dnat_tiers[0].ingress_policies] == ["prednat"]
    assert [p.name for p in hep.forward_tiers[0].ingress_policies] == ["fwd"]


def test_endpoint_moving_to_another_host_is_removed_here() -> None:
    h = Harness()
    here = wep("a", "198.19.0.1/32")
    h.put(here)
    assert h.dp.weps
    h.graph.on_updates(
        [(key_of(here), None), (key_of(w := wep("a", "198.19.0.1/32", node="host-2")), w)]
    )
    assert h.dp.weps == {}


def test_changing_a_policy_tier_replaces_its_id() -> None:
    h = Harness()
    h.put(
        res("Tier", "t", {"order": 1}), wep("a", "198.19.0.1/32"), gnp("x", {"selector": "all()"})
    )
    assert set(h.dp.policies) == {m.PolicyID("default", "x")}
    h.put(gnp("t.x", {"tier": "t", "selector": "all()"}))
    h.delete(gnp("x", {"selector": "all()"}))
    assert set(h.dp.policies) == {m.PolicyID("t", "t.x")}
    assert [t.name for t in h.wep(wep_name("a")).tiers] == ["t"]


SCENARIO: list[Resource] = [
    res("Tier", "security", {"order": 10}),
    res(
        "Profile",
        "kns.shop",
        {"labelsToApply": {"pcns.team": "blue"}, "ingress": [{"action": "Allow"}]},
    ),
    wep(
        "a",
        "198.19.0.1/32",
        profiles=("kns.shop",),
        app="web",
        ports=[{"name": "http", "protocol": "TCP", "port": 80}],
    ),
    wep("b", "198.19.0.2/32", profiles=("kns.shop",), app="db"),
    wep("c", "198.19.1.1/32", node="host-2", profiles=("kns.shop",), app="web"),
    res("GlobalNetworkSet", "g", {"nets": ["198.18.50.0/24"]}, app="web"),
    gnp(
        "security.p1",
        {
            "tier": "security",
            "selector": "app == 'web'",
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"namespaceSelector": "team == 'blue'"},
                    "destination": {"ports": ["http"]},
                }
            ],
        },
    ),
    gnp(
        "p2",
        {
            "selector": "has(app)",
            "egress": [{"action": "Deny", "destination": {"selector": "app == 'web'"}}],
        },
    ),
    res(
        "NetworkPolicy",
        "p3",
        {
            "selector": "app == 'db'",
            "ingress": [{"action": "Allow", "source": {"selector": "app == 'web'"}}],
        },
        ns="shop",
    ),
]


def final_state(order: list[Resource], deletions: list[Resource] = ()) -> ModelDataplane:  # type: ignore[assignment]
    h = Harness()
    for resource in order:
        h.put(resource)
    for resource in deletions:
        h.delete(resource)
    h.assert_no_leaks()
    return h.dp


@pytest.mark.parametrize("seed", range(12))
def test_final_state_does_not_depend_on_update_order(seed: int) -> None:
    reference = final_state(SCENARIO)
    shuffled = list(SCENARIO)
    random.Random(seed).shuffle(shuffled)
    other = final_state(shuffled)
    assert (other.ipsets, other.policies, other.profiles, other.weps) == (
        reference.ipsets, reference.policies, reference.profiles, reference.weps,
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_adding_and_deleting_everything_leaves_nothing(seed: int) -> None:
    order = list(SCENARIO)
    rng = random.Random(seed)
    rng.shuffle(order)
    deletions = list(SCENARIO)
    rng.shuffle(deletions)
    dp = final_state(order, deletions)
    assert (dp.ipsets, dp.policies, dp.profiles, dp.weps) == ({}, {}, {}, {})


def test_batched_and_one_by_one_agree() -> None:
    h = Harness()
    h.graph.on_updates([(key_of(r), r) for r in SCENARIO])
    single = final_state(SCENARIO)
    assert (h.dp.ipsets, h.dp.policies, h.dp.weps) == (single.ipsets, single.policies, single.weps)


def test_kinds_no_node_calculates_with_are_ignored() -> None:
    dp = ModelDataplane()
    graph = CalcGraph(HOST, dp)
    bgp = res("BGPConfiguration", "default", {"asNumber": 64512})
    graph.on_updates([(key_of(bgp), bgp), (key_of(bgp), None)])
    graph.on_status(SyncStatus.IN_SYNC)
    assert dp.batches == [[m.InSync()]]


def test_the_start_up_snapshot_goes_out_once_whole_at_the_first_in_sync() -> None:
    """Batches before the first in-sync are applied, not flushed: the dataplane gets the
    snapshot as one batch ending in InSync. After it, each batch is flushed."""
    dp = ModelDataplane()
    graph = CalcGraph(HOST, dp)
    web = wep("web", "198.19.0.1/32", app="web")
    policy = gnp("p", {"selector": "app == 'web'", "ingress": [{"action": "Allow"}]})
    graph.on_updates([(key_of(policy), policy)])
    graph.on_updates([(key_of(web), web)])
    assert dp.batches == []
    graph.on_status(SyncStatus.IN_SYNC)
    assert len(dp.batches) == 1 and dp.batches[0][-1] == m.InSync()
    assert {type(msg) for msg in dp.batches[0]} >= {m.ActivePolicyUpdate, m.WorkloadEndpointUpdate}
    graph.on_updates([(key_of(web), None)])
    assert len(dp.batches) == 2 and not dp.weps


def test_ip_pools_pass_through_with_natoutgoing_disabled_ones_too() -> None:
    dp = ModelDataplane()
    graph = CalcGraph(HOST, dp)
    masq = res("IPPool", "masq", {"cidr": "198.19.0.0/16", "natOutgoing": True})
    plain = res("IPPool", "plain", {"cidr": "2001:db8:1::/48"})
    off = res("IPPool", "off", {"cidr": "198.18.64.0/18", "natOutgoing": True, "disabled": True})
    graph.on_updates([(key_of(r), r) for r in (masq, plain, off)])
    graph.on_status(SyncStatus.IN_SYNC)
    assert dp.pools == {
        "masq": m.IPAMPool("198.19.0.0/16", True),
        "plain": m.IPAMPool("2001:db8:1::/48", False),
        "off": m.IPAMPool("198.18.64.0/18", True),  # disabling stops allocation, not NAT
    }
    graph.on_updates([(key_of(masq), masq)])  # unchanged: nothing sent
    assert len(dp.batches) == 1
    unmasq = res("IPPool", "masq", {"cidr": "198.19.0.0/16"})
    graph.on_updates([(key_of(unmasq), unmasq), (key_of(off), None)])
    assert dp.batches[-1] == [
        m.IPAMPoolUpdate("masq", m.IPAMPool("198.19.0.0/16", False)),
        m.IPAMPoolRemove("off"),
    ]


def test_a_rule_only_change_does_not_rebuild_endpoints_an_order_change_does() -> None:
    h = Harness()
    rules = {"selector": "app == 'web'", "ingress": [{"action": "Allow", "protocol": "TCP"}]}
    h.put(wep("web", "198.19.0.1/32", app="web"), gnp("p", {**rules, "order": 10}))
    pid = m.PolicyID("default", "p")
    changed = gnp("p", {**rules, "order": 10, "ingress": [{"action": "Allow", "protocol": "UDP"}]})
    h.graph.apply(key_of(changed), changed)
    assert not h.graph._resolver.endpoints.pending  # the endpoints' tiers cannot have changed
    h.graph.flush()
    assert [type(msg) for msg in h.dp.batches[-1]] == [m.ActivePolicyUpdate]
    reordered = gnp("p", {**rules, "order": 5, "types": ["Ingress", "Egress"]})
    h.put(reordered)
    web = parse_selector("app == 'web'").unique_id()
    tier = m.TierInfo("default", m.Action.DENY, (pid,), (pid,), (web,), (web,))
    assert h.wep(wep_name("web")).tiers == (tier,)


def test_same_selection_policies_carry_one_selection_and_a_selector_change_resends() -> None:
    h = Harness()
    allow = {"ingress": [{"action": "Allow"}]}
    h.put(
        wep("web", "198.19.0.1/32", app="web", tier="front"),
        gnp("a", {**allow, "selector": "app == 'web'", "order": 1}),
        gnp("b", {**allow, "selector": "app == 'web'", "order": 2}),
    )
    (tier,) = h.wep(wep_name("web")).tiers
    web = parse_selector("app == 'web'").unique_id()
    assert tier.ingress_selections == (web, web)
    h.put(gnp("b", {**allow, "selector": "tier == 'front'", "order": 2}))  # same endpoints
    (tier,) = h.wep(wep_name("web")).tiers
    assert tier.ingress_selections == (web, parse_selector("tier == 'front'").unique_id())


def sa_wep(pod: str, ip: str, account: str, node: str = HOST, profile: str = "") -> Resource:
    doc = wep(pod, ip, node=node, profiles=(profile,) if profile else ()).to_dict()
    doc["spec"]["serviceAccountName"] = account
    doc["metadata"].pop("labels")  # the automatic ones are derived again
    return parse_resource(doc)


def test_service_accounts_select_policies_and_rule_peers() -> None:
    """serviceAccountSelector and a rule's serviceAccounts match the service account label
    and, as in Calico's etcd mode, the `pcsa.` labels of the account's `ksa.` profile."""
    h = Harness()
    h.put(
        res("Profile", "ksa.shop.db", {"labelsToApply": {"pcsa.tier": "data"}}),
        sa_wep("db", "198.19.0.1/32", "db", profile="ksa.shop.db"),
        sa_wep("web", "198.19.0.2/32", "web"),
        sa_wep("api", "198.19.1.1/32", "api", node="host-2"),
        sa_wep("batch", "198.19.1.2/32", "batch", node="host-2"),
        gnp(
            "data",
            {
                "serviceAccountSelector": "tier == 'data'",
                "ingress": [
                    {"action": "Allow", "source": {"serviceAccounts": {"names": ["api"]}}},
                    {
                        "action": "Deny",
                        "protocol": "ICMP",
                        "notICMP": {"type": 8},
                        "source": {"serviceAccounts": {"selector": "tier == 'data'"}},
                    },
                ],
            },
        ),
    )
    pid = m.PolicyID("default", "data")
    assert [t.ingress_policies for t in h.wep(wep_name("db")).tiers] == [(pid,)]
    assert h.wep(wep_name("web")).tiers == ()
    by_name, by_selector = h.dp.policies[pid].inbound_rules
    assert h.members(by_name) == {"198.19.1.1/32"}
    assert h.members(by_selector) == {"198.19.0.1/32"}
    assert by_selector.not_icmp == m.ICMPMatch(8, None)
    h.assert_no_leaks()
