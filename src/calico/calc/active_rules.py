"""Which policies and profiles the local endpoints use (Calico's ActiveRulesCalculator).

A policy is active while its selector matches at least one local endpoint; a profile while
at least one local endpoint names it. Fail closed: an active profile that does not exist
is sent as drop-all, never skipped.

Inputs: policies and profiles (from the dispatcher), local endpoints and their effective
labels (from the local endpoint filter and the label inheritance index). Outputs: each
policy/endpoint match as it starts and stops (to the policy resolver), and `policies` and
`profiles`, whose desired values are the active ones' parsed rules and IP sets.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from calico.calc.items import Item, ItemKey
from calico.calc.messages import ParsedPolicy, ParsedProfile, PolicyID
from calico.calc.rule_scanner import DROP_ALL_PROFILE, Specs, parse_policy, parse_profile
from calico.calc.selectors import policy_selection
from calico.calc.sent_state import SentState
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy, Profile
from calico.selector import LabelIndex


class MatchListener(Protocol):
    def on_policy_match(self, pid: PolicyID, key: ItemKey) -> None: ...

    def on_policy_unmatch(self, pid: PolicyID, key: ItemKey) -> None: ...


class ActiveRulesCalculator:
    def __init__(self, matches: MatchListener) -> None:
        self._matches = matches
        self._policies: dict[PolicyID, NetworkPolicy | GlobalNetworkPolicy] = {}
        self._index: LabelIndex[PolicyID, ItemKey] = LabelIndex(self._on_match, self._on_unmatch)
        self._match_counts: Counter[PolicyID] = Counter()
        self._profiles: dict[str, Profile] = {}
        self._endpoint_profiles: dict[ItemKey, tuple[str, ...]] = {}  # local endpoints
        self._profile_refs: Counter[str] = Counter()
        self.policies: SentState[PolicyID, tuple[ParsedPolicy, Specs]] = SentState(
            self._policy_rules, _policy_order
        )
        self.profiles: SentState[str, tuple[ParsedProfile, Specs]] = SentState(
            self._profile_rules, str
        )

    # -- policies and profiles ------------------------------------------------------------

    def on_policy_update(
        self, pid: PolicyID, policy: NetworkPolicy | GlobalNetworkPolicy | None
    ) -> None:
        if policy is None:
            self._index.delete_selector(pid)
            self._policies.pop(pid, None)
        else:
            self._policies[pid] = policy
            self._index.update_selector(pid, policy_selection(policy))
        self.policies.mark(pid)

    def on_profile_update(self, name: str, profile: Profile | None) -> None:
        if profile is None:
            self._profiles.pop(name, None)
        else:
            self._profiles[name] = profile
        self.profiles.mark(name)

    # -- local endpoints ------------------------------------------------------------------

    def on_endpoint_update(self, key: ItemKey, endpoint: WorkloadEndpoint | HostEndpoint) -> None:
        profiles = tuple(endpoint.spec.profiles or ())
        self._ref_profiles(profiles, +1)
        self._ref_profiles(self._endpoint_profiles.get(key, ()), -1)
        self._endpoint_profiles[key] = profiles

    def on_endpoint_remove(self, key: ItemKey) -> None:
        self._index.delete_labels(key)
        self._ref_profiles(self._endpoint_profiles.pop(key), -1)

    def on_item_update(self, key: ItemKey, item: Item, labels: dict[str, str]) -> None:
        if key in self._endpoint_profiles:  # only local endpoints select policies
            self._index.update_labels(key, labels)

    def on_item_remove(self, key: ItemKey) -> None:
        """Nothing to do: a local endpoint has left through `on_endpoint_remove`."""

    # -- internals ------------------------------------------------------------------------

    def _ref_profiles(self, names: tuple[str, ...], delta: int) -> None:
        for name in names:
            self._profile_refs[name] += delta
            if self._profile_refs[name] == (1 if delta > 0 else 0):
                self.profiles.mark(name)
            if self._profile_refs[name] <= 0:
                del self._profile_refs[name]

    def _on_match(self, pid: PolicyID, key: ItemKey) -> None:
        self._match_counts[pid] += 1
        if self._match_counts[pid] == 1:
            self.policies.mark(pid)
        self._matches.on_policy_match(pid, key)

    def _on_unmatch(self, pid: PolicyID, key: ItemKey) -> None:
        self._match_counts[pid] -= 1
        if not self._match_counts[pid]:
            del self._match_counts[pid]
            self.policies.mark(pid)
        self._matches.on_policy_unmatch(pid, key)

    def _policy_rules(self, pid: PolicyID) -> tuple[ParsedPolicy, Specs] | None:
        policy = self._policies.get(pid)
        return parse_policy(policy) if policy is not None and pid in self._match_counts else None

    def _profile_rules(self, name: str) -> tuple[ParsedProfile, Specs] | None:
        if name not in self._profile_refs:
            return None
        profile = self._profiles.get(name)
        return parse_profile(profile) if profile is not None else (DROP_ALL_PROFILE, {})


def _policy_order(pid: PolicyID) -> tuple[str, str, str]:
    return (pid.tier, pid.namespace or "", pid.name)
