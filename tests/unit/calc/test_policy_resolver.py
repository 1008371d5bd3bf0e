"""PolicyResolver's caches: a workload's own part of its message and the tiers of a set of
policies are reused only while what they were made from is unchanged."""

from __future__ import annotations

from calico.calc import messages as m
from calico.calc.items import ItemKey
from calico.calc.policy_resolver import PolicyMeta, PolicyResolver, TierMeta
from calico.model import endpoints as model
from calico.model import parse_resource

P1, P2 = m.PolicyID("default", "a"), m.PolicyID("default", "b")


def workload(pod: str, ip: str) -> model.WorkloadEndpoint:
    wep = parse_resource({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"namespace": "ns"},
        "spec": {"node": "h", "orchestrator": "k8s", "pod": pod, "endpoint": "eth0",
                 "interfaceName": f"cali{pod}", "ipNetworks": [ip]},
    })  # fmt: skip
    assert isinstance(wep, model.WorkloadEndpoint)
    return wep


def meta(pid: m.PolicyID, order: float) -> PolicyMeta:
    return PolicyMeta(pid, order, ingress=True, egress=False, selection="s")


def sent(resolver: PolicyResolver) -> dict[ItemKey, m.WorkloadEndpoint]:
    out = {}
    for change in resolver.endpoints.changes():
        assert isinstance(change.new, m.WorkloadEndpointUpdate)
        out[change.key] = change.new.endpoint
    return out


def resolver_with(*pods: str) -> tuple[PolicyResolver, list[ItemKey]]:
    resolver = PolicyResolver()
    keys = [ItemKey("wep", pod, "ns") for pod in pods]
    for i, key in enumerate(keys):
        resolver.on_endpoint_update(key, workload(key.name, f"2001:db8::{i + 1}"))
    for pid, order in ((P1, 1), (P2, 2)):
        resolver.on_policy_update(pid, meta(pid, order))
        for key in keys:
            resolver.on_policy_match(pid, key)
    return resolver, keys


def test_workloads_with_the_same_policies_share_their_tiers() -> None:
    resolver, (k1, k2) = resolver_with("p1", "p2")
    out = sent(resolver)
    assert out[k1].tiers[0].ingress_policies == (P1, P2)
    assert out[k1].tiers is out[k2].tiers
    assert out[k1].ipv6_nets == ("2001:db8::1/128",)


def test_a_policy_order_change_reorders_the_tiers() -> None:
    resolver, (k1,) = resolver_with("p1")
    sent(resolver)
    resolver.on_policy_update(P1, meta(P1, 3))
    assert sent(resolver)[k1].tiers[0].ingress_policies == (P2, P1)


def test_a_tier_change_reaches_the_tiers() -> None:
    resolver, (k1,) = resolver_with("p1")
    sent(resolver)
    resolver.on_tier_update("default", TierMeta(None, m.Action.PASS))
    assert sent(resolver)[k1].tiers[0].default_action == m.Action.PASS


def test_a_match_change_reaches_only_that_workload() -> None:
    resolver, (_, k2) = resolver_with("p1", "p2")
    sent(resolver)
    resolver.on_policy_unmatch(P2, k2)
    out = sent(resolver)
    assert list(out) == [k2]
    assert out[k2].tiers[0].ingress_policies == (P1,)


def test_a_workload_update_rebuilds_its_own_part() -> None:
    resolver, (k1,) = resolver_with("p1")
    sent(resolver)
    resolver.on_endpoint_update(k1, workload("p1", "2001:db8::9"))
    out = sent(resolver)
    assert out[k1].ipv6_nets == ("2001:db8::9/128",)
    assert out[k1].tiers[0].ingress_policies == (P1, P2)
    resolver.on_endpoint_remove(k1)
    resolver.on_endpoint_update(k1, workload("p1", "2001:db8::7"))
    assert sent(resolver)[k1].ipv6_nets == ("2001:db8::7/128",)
