"""Felix's calculation graph: typed datastore updates in, ordered dataplane messages out.

```
 resource updates ──► items (endpoints, network sets) ──► IPSetCalculator (all items)
        │                  │ local endpoints only
        │                  ▼
        ├─► policies ──► policy LabelIndex ──► matches ──► active policies ─┐
        ├─► profiles ──► labelsToApply (label inheritance), active profiles ┤─► rule scanner
        ├─► tiers                                                            │   (IP set refs)
        └─► IP pools ──► passed through (CIDR, natOutgoing)                  │
                                                                             ▼
 flush(): endpoints (tiers resolved) → policies → profiles → IP sets (and IP pools), each
 diffed against what was last sent, emitted in dependency order (IP sets first, removals
 reversed).
```

Pure and synchronous: no I/O, no clock. Output depends only on the current state: every
flush diffs what should exist against what was last sent. Fail closed: a profile an
endpoint names but that does not exist is sent as drop-all, never skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from calico.calc.endpoint_messages import (
    host_endpoint_id,
    host_endpoint_message,
    workload_endpoint_id,
    workload_endpoint_message,
)
from calico.calc.ipset_calc import IPSetCalculator
from calico.calc.items import Item, ItemKey, effective_labels, item_from, normalise_cidr
from calico.calc.messages import (
    Action,
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileRemove,
    ActiveProfileUpdate,
    HostEndpointRemove,
    HostEndpointUpdate,
    InSync,
    IPAMPool,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    Message,
    ParsedPolicy,
    ParsedProfile,
    PolicyID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calc.policy_resolver import (
    PolicyMeta,
    TierMeta,
    host_tiers,
    policy_meta,
    workload_tiers,
)
from calico.calc.rule_scanner import DROP_ALL_PROFILE, Specs, parse_policy, parse_profile
from calico.calc.selectors import policy_selector
from calico.model.base import Resource
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.keys import ResourceKey
from calico.model.network import IPPool
from calico.model.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)
from calico.model.sync import SyncStatus
from calico.selector import LabelIndex, Selector

Emit = Callable[[Sequence[Message]], None]
OtherUpdate = Callable[[ResourceKey, Resource | None], None]


@dataclass(slots=True)
class _Policy:
    resource: NetworkPolicy | GlobalNetworkPolicy
    meta: PolicyMeta


class CalcGraph:
    def __init__(self, hostname: str, emit: Emit, on_other: OtherUpdate | None = None) -> None:
        self.hostname = hostname
        self._emit = emit
        self._on_other = on_other
        self._items: dict[ItemKey, Item] = {}
        self._children: dict[str, set[ItemKey]] = {}
        self._profiles: dict[str, Profile] = {}
        self._profile_labels: dict[str, dict[str, str]] = {}
        self._local: dict[ItemKey, WorkloadEndpoint | HostEndpoint] = {}
        self._policies: dict[PolicyID, _Policy] = {}
        self._policy_ids: dict[ResourceKey, PolicyID] = {}
        self._matches: dict[PolicyID, set[ItemKey]] = {}
        self._ep_policies: dict[ItemKey, set[PolicyID]] = {}
        self._index: LabelIndex[PolicyID, ItemKey] = LabelIndex(self._on_match, self._on_unmatch)
        self._tiers: dict[str, TierMeta] = {}
        self._ipsets = IPSetCalculator()
        self._ipset_refs: Counter[str] = Counter()
        self._profile_refs: Counter[str] = Counter()
        self._sent_policies: dict[PolicyID, tuple[ParsedPolicy, Specs]] = {}
        self._sent_profiles: dict[str, tuple[ParsedProfile, Specs]] = {}
        self._sent_endpoints: dict[ItemKey, Message] = {}
        self._dirty_policies: set[PolicyID] = set()
        self._dirty_profiles: set[str] = set()
        self._dirty_endpoints: set[ItemKey] = set()
        self._pools: dict[str, IPAMPool] = {}
        self._sent_pools: dict[str, IPAMPool] = {}
        self._dirty_pools: set[str] = set()
        self._in_sync = False
        self._sent_in_sync = False

    # -- inputs ---------------------------------------------------------------------------

    def on_status(self, status: SyncStatus) -> None:
        if status is SyncStatus.IN_SYNC:
            self._in_sync = True
            self.flush()

    def on_updates(self, updates: Sequence[tuple[ResourceKey, Resource | None]]) -> None:
        """Apply a batch of (key, resource-or-None) updates, then flush."""
        for key, resource in updates:
            self.apply(key, resource)
        self.flush()

    def apply(self, key: ResourceKey, resource: Resource | None) -> None:
        kind = key.kind
        ikey = item_key_for(key)
        if ikey is not None:
            self._on_item(ikey, resource)
        elif kind is Profile:
            self._on_profile(key.name, resource if isinstance(resource, Profile) else None)
        elif kind in (NetworkPolicy, GlobalNetworkPolicy):
            assert resource is None or isinstance(resource, NetworkPolicy | GlobalNetworkPolicy)
            self._on_policy(key, resource)
        elif kind is Tier:
            self._on_tier(key.name, resource if isinstance(resource, Tier) else None)
        elif kind is IPPool:
            self._on_pool(key.name, resource if isinstance(resource, IPPool) else None)
        elif self._on_other is not None:
            self._on_other(key, resource)

    def _on_item(self, ikey: ItemKey, resource: Resource | None) -> None:
        item = item_from(resource) if resource is not None else None
        old = self._items.pop(ikey, None)
        for parent in old.parents if old else ():
            self._children.get(parent, set()).discard(ikey)
        if item is None:
            self._ipsets.remove_item(ikey)
            self._set_local(ikey, None, {})
            return
        self._items[ikey] = item
        for parent in item.parents:
            self._children.setdefault(parent, set()).add(ikey)
        labels = effective_labels(item, self._profile_labels)
        self._ipsets.update_item(ikey, item, labels)
        local = resource if isinstance(resource, WorkloadEndpoint | HostEndpoint) else None
        if local is not None and (local.spec.node != self.hostname or not _programmable(local)):
            local = None
        self._set_local(ikey, local, labels)

    def _set_local(
        self,
        ikey: ItemKey,
        endpoint: WorkloadEndpoint | HostEndpoint | None,
        labels: dict[str, str],
    ) -> None:
        if endpoint is None:
            if self._local.pop(ikey, None) is not None:
                self._index.delete_labels(ikey)
                self._dirty_endpoints.add(ikey)
            return
        self._local[ikey] = endpoint
        self._index.update_labels(ikey, labels)
        self._dirty_endpoints.add(ikey)

    def _on_profile(self, name: str, profile: Profile | None) -> None:
        labels = dict(profile.spec.labelsToApply or {}) if profile is not None else {}
        if profile is None:
            self._profiles.pop(name, None)
        else:
            self._profiles[name] = profile
        self._dirty_profiles.add(name)
        if self._profile_labels.get(name, {}) == labels:
            return
        self._profile_labels[name] = labels
        for ikey in list(self._children.get(name, ())):
            item = self._items[ikey]
            merged = effective_labels(item, self._profile_labels)
            self._ipsets.update_item(ikey, item, merged)
            if ikey in self._local:
                self._index.update_labels(ikey, merged)

    def _on_policy(
        self, key: ResourceKey, policy: NetworkPolicy | GlobalNetworkPolicy | None
    ) -> None:
        old_id = self._policy_ids.pop(key, None)
        new_id = None
        if policy is not None:
            ns = policy.namespace if isinstance(policy, NetworkPolicy) else None
            new_id = PolicyID(policy.spec.tier or "default", policy.name, ns)
        if old_id is not None and old_id != new_id:
            self._index.delete_selector(old_id)
            self._policies.pop(old_id, None)
            self._dirty_policies.add(old_id)
        if policy is None or new_id is None:
            return
        self._policy_ids[key] = new_id
        old = self._policies.get(new_id)
        meta = policy_meta(new_id, policy)
        self._policies[new_id] = _Policy(policy, meta)
        self._index.update_selector(new_id, _selector_of(policy))  # (un)matches mark endpoints
        self._dirty_policies.add(new_id)
        if old is None or old.meta != meta:  # a rules-only change leaves endpoints alone
            self._dirty_endpoints.update(self._matches.get(new_id, ()))

    def _on_tier(self, name: str, tier: Tier | None) -> None:
        if tier is None:
            self._tiers.pop(name, None)
        else:
            action = Action.PASS if tier.spec.defaultAction == "Pass" else Action.DENY
            self._tiers[name] = TierMeta(tier.spec.order, action)
        for pid, members in self._matches.items():
            if pid.tier == name:
                self._dirty_endpoints.update(members)

    def _on_pool(self, name: str, pool: IPPool | None) -> None:
        # Disabled pools stay in: disabling only stops new allocations, and the workloads
        # still in the pool keep their natOutgoing (libcalico-go's Masquerade = natOutgoing).
        if pool is None:
            self._pools.pop(name, None)
        else:
            cidr = normalise_cidr(pool.spec.cidr)
            self._pools[name] = IPAMPool(cidr, bool(pool.spec.natOutgoing))
        self._dirty_pools.add(name)

    # -- label index callbacks ------------------------------------------------------------

    def _on_match(self, pid: PolicyID, ikey: ItemKey) -> None:
        members = self._matches.setdefault(pid, set())
        if not members:
            self._dirty_policies.add(pid)
        members.add(ikey)
        self._ep_policies.setdefault(ikey, set()).add(pid)
        self._dirty_endpoints.add(ikey)

    def _on_unmatch(self, pid: PolicyID, ikey: ItemKey) -> None:
        members = self._matches[pid]
        members.discard(ikey)
        if not members:
            del self._matches[pid]
            self._dirty_policies.add(pid)
        self._ep_policies[ikey].discard(pid)
        self._dirty_endpoints.add(ikey)

    # -- flush ----------------------------------------------------------------------------

    def flush(self) -> None:
        ep_updates, ep_removes = self._flush_endpoints()
        pol_updates, pol_removes = self._flush_policies()
        prof_updates, prof_removes = self._flush_profiles()
        ipset_new, ipset_deltas, ipset_removes = self._ipsets.take_changes()
        pool_updates, pool_removes = self._flush_pools()
        out: list[Message] = [*pool_updates, *ipset_new, *ipset_deltas]
        out += [*pol_updates, *prof_updates, *ep_updates]
        out += [*ep_removes, *prof_removes, *pol_removes, *ipset_removes, *pool_removes]
        if self._in_sync and not self._sent_in_sync:
            self._sent_in_sync = True
            out.append(InSync())
        if out:
            self._emit(out)

    def _flush_endpoints(self) -> tuple[list[Message], list[Message]]:
        updates: list[Message] = []
        removes: list[Message] = []
        for ikey in sorted(self._dirty_endpoints, key=_item_sort_key):
            desired = self._endpoint_message(ikey)
            sent = self._sent_endpoints.get(ikey)
            if desired == sent:
                continue
            self._ref_profiles(_profile_ids(sent), -1)
            self._ref_profiles(_profile_ids(desired), +1)
            if desired is None:
                del self._sent_endpoints[ikey]
                removes.append(_remove_message(sent))
            else:
                self._sent_endpoints[ikey] = desired
                updates.append(desired)
        self._dirty_endpoints.clear()
        return updates, removes

    def _endpoint_message(self, ikey: ItemKey) -> Message | None:
        endpoint = self._local.get(ikey)
        if endpoint is None:
            return None
        metas = [self._policies[pid].meta for pid in self._ep_policies.get(ikey, ())]
        if isinstance(endpoint, WorkloadEndpoint):
            tiers = workload_tiers(metas, self._tiers)
            message = workload_endpoint_message(endpoint, tiers)
            return WorkloadEndpointUpdate(workload_endpoint_id(endpoint), message)
        hep_message = host_endpoint_message(endpoint, host_tiers(metas, self._tiers))
        return HostEndpointUpdate(host_endpoint_id(endpoint), hep_message)

    def _flush_pools(self) -> tuple[list[Message], list[Message]]:
        updates: list[Message] = []
        removes: list[Message] = []
        for name in sorted(self._dirty_pools):
            desired, sent = self._pools.get(name), self._sent_pools.get(name)
            if desired == sent:
                continue
            if desired is None:
                del self._sent_pools[name]
                removes.append(IPAMPoolRemove(name))
            else:
                self._sent_pools[name] = desired
                updates.append(IPAMPoolUpdate(name, desired))
        self._dirty_pools.clear()
        return updates, removes

    def _ref_profiles(self, names: Sequence[str], delta: int) -> None:
        for name in names:
            self._profile_refs[name] += delta
            if self._profile_refs[name] in (0, 1) and (delta > 0) == (
                self._profile_refs[name] == 1
            ):
                self._dirty_profiles.add(name)
            if self._profile_refs[name] <= 0:
                del self._profile_refs[name]

    def _flush_policies(self) -> tuple[list[Message], list[Message]]:
        updates: list[Message] = []
        removes: list[Message] = []
        for pid in sorted(self._dirty_policies, key=_policy_sort_key):
            policy = self._policies.get(pid)
            active = policy is not None and bool(self._matches.get(pid))
            desired = parse_policy(policy.resource) if active and policy else None
            sent = self._sent_policies.get(pid)
            if desired == sent:
                continue
            self._swap_sets(sent, desired)
            if desired is None:
                del self._sent_policies[pid]
                removes.append(ActivePolicyRemove(pid))
            else:
                self._sent_policies[pid] = desired
                updates.append(ActivePolicyUpdate(pid, desired[0]))
        self._dirty_policies.clear()
        return updates, removes

    def _flush_profiles(self) -> tuple[list[Message], list[Message]]:
        updates: list[Message] = []
        removes: list[Message] = []
        for name in sorted(self._dirty_profiles):
            desired: tuple[ParsedProfile, Specs] | None = None
            if self._profile_refs.get(name, 0) > 0:
                profile = self._profiles.get(name)
                desired = parse_profile(profile) if profile else (DROP_ALL_PROFILE, {})
            sent = self._sent_profiles.get(name)
            if desired == sent:
                continue
            self._swap_sets(sent, desired)
            if desired is None:
                del self._sent_profiles[name]
                removes.append(ActiveProfileRemove(name))
            else:
                self._sent_profiles[name] = desired
                updates.append(ActiveProfileUpdate(name, desired[0]))
        self._dirty_profiles.clear()
        return updates, removes

    def _swap_sets(
        self, old: tuple[object, Specs] | None, new: tuple[object, Specs] | None
    ) -> None:
        """Reference the new rules' IP sets before releasing the old ones (no churn)."""
        for set_id, spec in (new[1] if new else {}).items():
            self._ipset_refs[set_id] += 1
            if self._ipset_refs[set_id] == 1:
                self._ipsets.add_set(spec)
        for set_id in old[1] if old else {}:
            self._ipset_refs[set_id] -= 1
            if self._ipset_refs[set_id] == 0:
                del self._ipset_refs[set_id]
                self._ipsets.remove_set(set_id)


_ITEM_KINDS = {
    WorkloadEndpoint: "wep",
    HostEndpoint: "hep",
    NetworkSet: "netset",
    GlobalNetworkSet: "gns",
}


def item_key_for(key: ResourceKey) -> ItemKey | None:
    """The item identity of an endpoint or network set key; None for other kinds."""
    kind = _ITEM_KINDS.get(key.kind)
    if kind is None:
        return None
    return ItemKey(kind, key.name, key.namespace if key.kind.NAMESPACED else None)


def _programmable(endpoint: WorkloadEndpoint | HostEndpoint) -> bool:
    """A workload endpoint needs its host-side interface name to be programmed."""
    return not isinstance(endpoint, WorkloadEndpoint) or bool(endpoint.spec.interfaceName)


def _selector_of(policy: NetworkPolicy | GlobalNetworkPolicy) -> Selector:
    spec = policy.spec
    if isinstance(policy, NetworkPolicy):
        return policy_selector(
            spec.selector, policy.namespace or "default", None, spec.serviceAccountSelector
        )
    return policy_selector(
        spec.selector, None, policy.spec.namespaceSelector, spec.serviceAccountSelector
    )


def _profile_ids(message: Message | None) -> tuple[str, ...]:
    if isinstance(message, WorkloadEndpointUpdate | HostEndpointUpdate):
        return message.endpoint.profile_ids
    return ()


def _remove_message(message: Message | None) -> Message:
    if isinstance(message, WorkloadEndpointUpdate):
        return WorkloadEndpointRemove(message.id)
    assert isinstance(message, HostEndpointUpdate)
    return HostEndpointRemove(message.id)


def _item_sort_key(key: ItemKey) -> tuple[str, str, str]:
    return (key.kind, key.namespace or "", key.name)


def _policy_sort_key(pid: PolicyID) -> tuple[str, str, str]:
    return (pid.tier, pid.namespace or "", pid.name)
