"""Fail closed on broken policies (pure).

A policy that fails validation in the datastore cannot be enforced as written, but dropping
it silently would open whatever it was protecting (the endpoint would fall through to its
profiles, often allow-all). If the policy's selector (and namespace) can still be read, it is
replaced by a stand-in with the same selector, tier and order that denies everything in the
directions the policy covers (its `types`, or Calico's defaulting of them from the rule lists
present), so the endpoints it selects get drop, not allow, and an Ingress-only policy does not
cut their egress. Types that cannot be read cover both directions. A policy whose selector
cannot be read cannot be placed and is dropped (and reported) as any other invalid value.
"""

from __future__ import annotations

import json
from typing import Any

from calico.model import ResourceError, parse_resource
from calico.model.base import Resource
from calico.model.keys import ResourceKey
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy
from calico.model.rules import PolicyType, default_types
from calico.selector import SelectorError, parse


def salvage_policy(key: ResourceKey, raw: bytes) -> tuple[Resource, str] | None:
    if key.kind not in (NetworkPolicy, GlobalNetworkPolicy):
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    spec = data.get("spec") if isinstance(data, dict) else None
    spec = spec if isinstance(spec, dict) else {}
    selector = spec.get("selector", "")
    if not isinstance(selector, str):
        return None
    try:
        parse(selector)
    except SelectorError:
        return None
    stand_in = _stand_in(key, spec, selector)
    try:
        resource = parse_resource(stand_in)
    except ResourceError:
        return None
    directions = " and ".join(stand_in["spec"]["types"])
    return resource, f"enforced as deny-all ({directions}) until it is fixed"


def _stand_in(key: ResourceKey, spec: dict[str, Any], selector: str) -> dict[str, Any]:
    tier = spec.get("tier") if isinstance(spec.get("tier"), str) else "default"
    if tier != "default" and not key.name.startswith(f"{tier}."):
        tier = "default"
    order = spec.get("order")
    meta: dict[str, Any] = {"name": key.name}
    if key.namespace:
        meta["namespace"] = key.namespace
    types = _types(spec)
    body: dict[str, Any] = {"tier": tier, "selector": selector, "types": types}
    for kind in types:
        body[kind.lower()] = [{"action": "Deny"}]
    if isinstance(order, int | float) and not isinstance(order, bool):
        body["order"] = float(order)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": key.kind.KIND,
        "metadata": meta,
        "spec": body,
    }


_BOTH: list[PolicyType] = ["Ingress", "Egress"]


def _types(spec: dict[str, Any]) -> list[PolicyType]:
    """The directions the broken policy covers; both when that cannot be read."""
    types = spec.get("types")
    if types is None:
        ingress, egress = spec.get("ingress"), spec.get("egress")
        if not all(rules is None or isinstance(rules, list) for rules in (ingress, egress)):
            return _BOTH
        return default_types(ingress, egress)
    if not isinstance(types, list) or not types or any(t not in _BOTH for t in types):
        return _BOTH
    if len(set(types)) != len(types):
        return _BOTH
    return [kind for kind in _BOTH if kind in types]
