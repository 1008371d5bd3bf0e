"""Fail closed on broken policies (pure).

A policy that fails validation in the datastore cannot be enforced as written, but dropping
it silently would open whatever it was protecting (the endpoint would fall through to its
profiles, often allow-all). If the policy's selector (and namespace) can still be read, it is
replaced by a stand-in with the same selector, tier and order that denies everything in both
directions, so the endpoints it selects get drop, not allow. A policy whose selector cannot be
read cannot be placed and is dropped (and reported) as any other invalid value.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from calico.model import ResourceError, parse_resource
from calico.model.base import Resource
from calico.model.keys import ResourceKey
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy
from calico.selector import SelectorError, parse

log = logging.getLogger(__name__)


def salvage_policy(key: ResourceKey, raw: bytes) -> Resource | None:
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
    log.error("policy %s is invalid; enforcing it as deny-all until it is fixed", key)
    return resource


def _stand_in(key: ResourceKey, spec: dict[str, Any], selector: str) -> dict[str, Any]:
    tier = spec.get("tier") if isinstance(spec.get("tier"), str) else "default"
    if tier != "default" and not key.name.startswith(f"{tier}."):
        tier = "default"
    order = spec.get("order")
    meta: dict[str, Any] = {"name": key.name}
    if key.namespace:
        meta["namespace"] = key.namespace
    body: dict[str, Any] = {
        "tier": tier,
        "selector": selector,
        "types": ["Ingress", "Egress"],
        "ingress": [{"action": "Deny"}],
        "egress": [{"action": "Deny"}],
    }
    if isinstance(order, int | float) and not isinstance(order, bool):
        body["order"] = float(order)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": key.kind.KIND,
        "metadata": meta,
        "spec": body,
    }
