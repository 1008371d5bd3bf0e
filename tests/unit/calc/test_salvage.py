"""Invalid policies fail closed: a readable selector gets a deny-all stand-in covering the
directions the policy covers."""

from __future__ import annotations

import json

import pytest

from calico.calc.salvage import salvage_policy
from calico.model.base import Resource
from calico.model.keys import ResourceKey
from calico.model.network import IPPool
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy


def salvaged(key: ResourceKey, data: bytes) -> Resource | None:
    got = salvage_policy(key, data)
    return got[0] if got else None


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
    stand_in = salvaged(
        key,
        raw(
            {
                "tier": "security",
                "order": 5,
                "selector": "app == 'db'",
                "types": ["Egress", "Ingress"],
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
    stand_in = salvaged(
        ResourceKey(NetworkPolicy, "p", "shop"),
        raw({"selector": "all()", "order": "x"}, "NetworkPolicy"),
    )
    assert (
        isinstance(stand_in, NetworkPolicy)
        and stand_in.namespace == "shop"
        and stand_in.spec.order is None
    )


def test_unreadable_selector_or_json_or_other_kinds_are_not_salvaged() -> None:
    assert salvaged(ResourceKey(GlobalNetworkPolicy, "x"), raw({"selector": "app =="})) is None
    assert salvaged(ResourceKey(GlobalNetworkPolicy, "x"), b"not json") is None
    assert salvaged(ResourceKey(IPPool, "x"), raw({"cidr": "bad"}, "IPPool")) is None


BAD_RULE = [{"action": "Allow", "protocol": "QUIC"}]


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({"types": ["Ingress"], "ingress": BAD_RULE, "egress": [{"action": "Allow"}]}, ["Ingress"]),
        ({"types": ["Egress"], "egress": BAD_RULE}, ["Egress"]),
        ({"ingress": BAD_RULE}, ["Ingress"]),  # Calico's defaulting from the rules present
        ({"egress": BAD_RULE}, ["Egress"]),
        ({"ingress": BAD_RULE, "egress": []}, ["Ingress"]),
        ({"ingress": [], "egress": BAD_RULE}, ["Egress"]),
        ({"ingress": {"x": 1}}, ["Ingress", "Egress"]),  # unreadable rules: both
        ({"types": "Ingress", "ingress": BAD_RULE}, ["Ingress", "Egress"]),
        ({"types": ["Ingress", "Sideways"]}, ["Ingress", "Egress"]),
        ({"types": ["Ingress", "Ingress"]}, ["Ingress", "Egress"]),
        ({"types": [], "ingress": BAD_RULE}, ["Ingress", "Egress"]),
        ({"types": [{"x": 1}]}, ["Ingress", "Egress"]),
    ],
)
def test_the_stand_in_denies_only_the_directions_the_policy_covers(
    spec: dict[str, object], types: list[str]
) -> None:
    got = salvage_policy(ResourceKey(GlobalNetworkPolicy, "x"), raw({"selector": "all()", **spec}))
    assert got is not None
    stand_in, note = got
    assert isinstance(stand_in, GlobalNetworkPolicy) and stand_in.spec.types == types
    assert bool(stand_in.spec.ingress) == ("Ingress" in types)
    assert bool(stand_in.spec.egress) == ("Egress" in types)
    assert note == f"enforced as deny-all ({' and '.join(types)}) until it is fixed"
