"""Ordered tiers of policies for one endpoint, and the node that resolves them (pure).

Calico's evaluation order: tiers by `order` (absent = last), ties by name; within a tier,
policies by `order` (absent = last), ties by name then namespace. A policy applies to a
direction when its `types` include it. Workload endpoints never see doNotTrack or preDNAT
policies (those are host-endpoint features); host endpoints get them in separate groups.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from calico.calc.endpoint_messages import (
    host_endpoint_id,
    host_endpoint_message,
    workload_endpoint_id,
    workload_endpoint_message,
)
from calico.calc.items import ItemKey
from calico.calc.messages import (
    Action,
    HostEndpointUpdate,
    PolicyID,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointUpdate,
)
from calico.calc.selectors import policy_selection
from calico.calc.sent_state import SentState
from calico.model import endpoints as model
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy, Tier

EndpointUpdate = WorkloadEndpointUpdate | HostEndpointUpdate
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V", bound=Hashable)


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
    selection: str = ""  # its selector's unique ID: equal ones select the same endpoints


def policy_id(policy: NetworkPolicy | GlobalNetworkPolicy) -> PolicyID:
    """A policy's ID includes its tier (so a tier change is a remove and an add)."""
    ns = policy.namespace if isinstance(policy, NetworkPolicy) else None
    return PolicyID(policy.spec.tier or "default", policy.name, ns)


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
        selection=policy_selection(policy).unique_id(),
    )


@dataclass(frozen=True, slots=True)
class TierMeta:
    order: float | None
    default_action: Action


DEFAULT_TIER_META = TierMeta(None, Action.DENY)


def tier_meta(tier: Tier) -> TierMeta:
    return TierMeta(
        tier.spec.order, Action.PASS if tier.spec.defaultAction == "Pass" else Action.DENY
    )


def _policy_sort_key(meta: PolicyMeta) -> tuple[float, str, str]:
    order = math.inf if meta.order is None else meta.order
    return (order, meta.id.name, meta.id.namespace or "")


def resolve_tiers(
    policies: Iterable[PolicyMeta], tiers: Mapping[str, TierMeta], *, selections: bool = False
) -> tuple[TierInfo, ...]:
    """`selections`: fill in each policy's selection (see TierInfo)."""
    by_tier: dict[str, list[PolicyMeta]] = {}
    for meta in policies:
        by_tier.setdefault(meta.id.tier, []).append(meta)

    def tier_key(name: str) -> tuple[float, str]:
        order = tiers.get(name, DEFAULT_TIER_META).order
        return (math.inf if order is None else order, name)

    result = []
    for name in sorted(by_tier, key=tier_key):
        ordered = sorted(by_tier[name], key=_policy_sort_key)
        ingress = [m for m in ordered if m.ingress]
        egress = [m for m in ordered if m.egress]
        if ingress or egress:
            action = tiers.get(name, DEFAULT_TIER_META).default_action
            result.append(
                TierInfo(
                    name,
                    action,
                    tuple(m.id for m in ingress),
                    tuple(m.id for m in egress),
                    tuple(m.selection for m in ingress) if selections else (),
                    tuple(m.selection for m in egress) if selections else (),
                )
            )
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
    normal = (m for m in policies if not (m.untracked or m.pre_dnat))
    return resolve_tiers(normal, tiers, selections=True)


def host_tiers(policies: Iterable[PolicyMeta], tiers: Mapping[str, TierMeta]) -> HostTiers:
    metas = list(policies)
    normal = [m for m in metas if not (m.untracked or m.pre_dnat)]
    return HostTiers(
        normal=resolve_tiers(normal, tiers),
        untracked=resolve_tiers((m for m in metas if m.untracked), tiers),
        pre_dnat=resolve_tiers((m for m in metas if m.pre_dnat), tiers),
        forward=resolve_tiers((m for m in normal if m.apply_on_forward), tiers),
    )


_TIERS_KEPT = 4096  # distinct policy sets whose tiers are kept (a bound, not a tuning)


class PolicyResolver:
    """Local endpoints -> their dataplane messages, with their policies in ordered tiers
    (Calico's PolicyResolver).

    Inputs: local endpoints (from the local endpoint filter), which policies match which of
    them (from the active rules calculator), policies' ordering metadata and tiers (from the
    dispatcher). Output: `endpoints`, whose desired value is each endpoint's message.
    """

    def __init__(self) -> None:
        self._endpoints: dict[ItemKey, model.WorkloadEndpoint | model.HostEndpoint] = {}
        self._policies_of: dict[ItemKey, set[PolicyID]] = {}
        self._endpoints_of: dict[PolicyID, set[ItemKey]] = {}
        self._metas: dict[PolicyID, PolicyMeta] = {}
        self._tiers: dict[str, TierMeta] = {}
        # Under churn most messages are rebuilt because a policy came or went: the workload's
        # own part (its message without tiers) is kept until the workload changes, and the
        # tiers of one set of policies (shared by every workload they all select) until a
        # policy's metadata or a tier changes.
        self._bases: dict[ItemKey, WorkloadEndpoint] = {}
        self._tiers_of: dict[frozenset[PolicyID], tuple[TierInfo, ...]] = {}
        self.endpoints: SentState[ItemKey, EndpointUpdate] = SentState(
            self._endpoint_message, _item_order
        )

    def on_endpoint_update(
        self, key: ItemKey, endpoint: model.WorkloadEndpoint | model.HostEndpoint
    ) -> None:
        self._endpoints[key] = endpoint
        self._bases.pop(key, None)
        self.endpoints.mark(key)

    def on_endpoint_remove(self, key: ItemKey) -> None:
        del self._endpoints[key]
        self._bases.pop(key, None)
        self.endpoints.mark(key)

    def on_policy_match(self, pid: PolicyID, key: ItemKey) -> None:
        self._policies_of.setdefault(key, set()).add(pid)
        self._endpoints_of.setdefault(pid, set()).add(key)
        self.endpoints.mark(key)

    def on_policy_unmatch(self, pid: PolicyID, key: ItemKey) -> None:
        _discard(self._policies_of, key, pid)
        _discard(self._endpoints_of, pid, key)
        self.endpoints.mark(key)

    def on_policy_update(self, pid: PolicyID, meta: PolicyMeta | None) -> None:
        """A rules-only change leaves the endpoints alone: their tiers cannot change."""
        old = self._metas.pop(pid, None)
        if meta is not None:
            self._metas[pid] = meta
        if old != meta:
            self._tiers_of.clear()
            self.endpoints.mark_all(self._endpoints_of.get(pid, ()))

    def on_tier_update(self, name: str, tier: TierMeta | None) -> None:
        if tier is None:
            self._tiers.pop(name, None)
        else:
            self._tiers[name] = tier
        self._tiers_of.clear()
        for pid, members in self._endpoints_of.items():
            if pid.tier == name:
                self.endpoints.mark_all(members)

    def _endpoint_message(self, key: ItemKey) -> EndpointUpdate | None:
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return None
        if isinstance(endpoint, model.WorkloadEndpoint):
            base = self._bases.get(key)
            if base is None:
                base = self._bases[key] = workload_endpoint_message(endpoint, ())
            pids = frozenset(self._policies_of.get(key, ()))
            tiers = self._tiers_of.get(pids)
            if tiers is None:
                if len(self._tiers_of) >= _TIERS_KEPT:
                    self._tiers_of.clear()
                metas = [self._metas[pid] for pid in pids]
                tiers = self._tiers_of[pids] = workload_tiers(metas, self._tiers)
            message = replace(base, tiers=tiers)
            return WorkloadEndpointUpdate(workload_endpoint_id(endpoint), message)
        metas = [self._metas[pid] for pid in self._policies_of.get(key, ())]
        hep_message = host_endpoint_message(endpoint, host_tiers(metas, self._tiers))
        return HostEndpointUpdate(host_endpoint_id(endpoint), hep_message)


def _discard(index: dict[_K, set[_V]], key: _K, member: _V) -> None:
    members = index[key]
    members.discard(member)
    if not members:
        del index[key]


def _item_order(key: ItemKey) -> tuple[str, str, str]:
    return (key.kind, key.namespace or "", key.name)
