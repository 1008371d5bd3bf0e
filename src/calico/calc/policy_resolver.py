"""Ordered tiers of policies for one endpoint (pure).

Calico's evaluation order: tiers by `order` (absent = last), ties by name; within a tier,
policies by `order` (absent = last), ties by name then namespace. A policy applies to a
direction when its `types` include it. Workload endpoints never see doNotTrack or preDNAT
policies (those are host-endpoint features); host endpoints get them in separate groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from calico.calc.messages import Action, PolicyID, TierInfo
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy


@dataclass(frozen=True, slots=True)
class PolicyMeta:
    """What ordering and grouping need to know about one policy."""

    id: PolicyID
    order: float | None
    ingress: bool
    egress: bool
    untracked: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False


def policy_meta(pid: PolicyID, policy: NetworkPolicy | GlobalNetworkPolicy) -> PolicyMeta:
    """Everything about a policy that endpoints' tiers depend on (its rules are not)."""
    types = policy.spec.types or []
    flags = policy.spec if isinstance(policy, GlobalNetworkPolicy) else None
    return PolicyMeta(
        id=pid,
        order=policy.spec.order,
        ingress="Ingress" in types,
        egress="Egress" in types,
        untracked=bool(flags and flags.doNotTrack),
        pre_dnat=bool(flags and flags.preDNAT),
        apply_on_forward=bool(flags and flags.applyOnForward),
    )


@dataclass(frozen=True, slots=True)
class TierMeta:
    order: float | None
    default_action: Action


DEFAULT_TIER_META = TierMeta(None, Action.DENY)


def _policy_sort_key(meta: PolicyMeta) -> tuple[float, str, str]:
    order = math.inf if meta.order is None else meta.order
    return (order, meta.id.name, meta.id.namespace or "")


def resolve_tiers(
    policies: Iterable[PolicyMeta], tiers: Mapping[str, TierMeta]
) -> tuple[TierInfo, ...]:
    by_tier: dict[str, list[PolicyMeta]] = {}
    for meta in policies:
        by_tier.setdefault(meta.id.tier, []).append(meta)

    def tier_key(name: str) -> tuple[float, str]:
        order = tiers.get(name, DEFAULT_TIER_META).order
        return (math.inf if order is None else order, name)

    result = []
    for name in sorted(by_tier, key=tier_key):
        ordered = sorted(by_tier[name], key=_policy_sort_key)
        ingress = tuple(m.id for m in ordered if m.ingress)
        egress = tuple(m.id for m in ordered if m.egress)
        if ingress or egress:
            action = tiers.get(name, DEFAULT_TIER_META).default_action
            result.append(TierInfo(name, action, ingress, egress))
    return tuple(result)


@dataclass(frozen=True, slots=True)
class HostTiers:
    normal: tuple[TierInfo, ...]
    untracked: tuple[TierInfo, ...]
    pre_dnat: tuple[TierInfo, ...]
    forward: tuple[TierInfo, ...]


def workload_tiers(
    policies: Iterable[PolicyMeta], tiers: Mapping[str, TierMeta]
) -> tuple[TierInfo, ...]:
    return resolve_tiers((m for m in policies if not (m.untracked or m.pre_dnat)), tiers)


def host_tiers(policies: Iterable[PolicyMeta], tiers: Mapping[str, TierMeta]) -> HostTiers:
    metas = list(policies)
    normal = [m for m in metas if not (m.untracked or m.pre_dnat)]
    return HostTiers(
        normal=resolve_tiers(normal, tiers),
        untracked=resolve_tiers((m for m in metas if m.untracked), tiers),
        pre_dnat=resolve_tiers((m for m in metas if m.pre_dnat), tiers),
        forward=resolve_tiers((m for m in normal if m.apply_on_forward), tiers),
    )
