"""Invalid policies fail closed: a readable selector gets a deny-all stand-in."""

from __future__ import annotations

import json

from calico.calc.salvage import salvage_policy
from calico.model.keys import ResourceKey
from calico.model.network import IPPool
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy


def raw(spec: dict[str, object], kind: str = "GlobalNetworkPolicy") -> bytes:
    return json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": kind,
            "metadata": {"name": "x"},
            "spec": spec,
        }
    ).encode()


def test_invalid_rules_become_deny_all_with_the_same_placement() -> None:
    key = ResourceKey(GlobalNetworkPolicy, "security.x")
    stand_in = salvage_policy(
        key,
        raw(
            {
                "tier": "security",
                "order": 5,
                "selector": "app == 'db'",
                "ingress": [{"action": "Allow", "protocol": "QUIC"}],
            }
        ),
    )
    assert isinstance(stand_in, GlobalNetworkPolicy)
    assert (
        stand_in.name == "security.x"
        and stand_in.spec.tier == "security"
        and stand_in.spec.order == 5
    )
    assert stand_in.spec.selector == "app == 'db'" and stand_in.spec.types == ["Ingress", "Egress"]
    assert [r.action for r in stand_in.spec.ingress or []] == ["Deny"]
    assert [r.action for r in stand_in.spec.egress or []] == ["Deny"]


def test_namespaced_policy_keeps_its_namespace() -> None:
    stand_in = salvage_policy(
        ResourceKey(NetworkPolicy, "p", "shop"),
        raw({"selector": "all()", "order": "x"}, "NetworkPolicy"),
    )
    assert (
        isinstance(stand_in, NetworkPolicy)
        and stand_in.namespace == "shop"
        and stand_in.spec.order is None
    )


def test_unreadable_selector_or_json_or_other_kinds_are_not_salvaged() -> None:
    assert (
        salvage_policy(ResourceKey(GlobalNetworkPolicy, "x"), raw({"selector": "app =="})) is None
    )
    assert salvage_policy(ResourceKey(GlobalNetworkPolicy, "x"), b"not json") is None
    assert salvage_policy(ResourceKey(IPPool, "x"), raw({"cidr": "bad"}, "IPPool")) is None
