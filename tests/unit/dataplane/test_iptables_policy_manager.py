"""PolicyManager: policy/profile messages -> chains in the right tables of both families."""

from __future__ import annotations

from calico.calc.messages import (
    Action,
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileRemove,
    ActiveProfileUpdate,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
)
from calico.dataplane.managers.policy import PolicyManager
from calico.rules.config import RulesConfig
from calico.testing.dataplane import RecordingTable

PID = PolicyID("default", "default.p")
POLICY = ParsedPolicy(inbound_rules=(ParsedRule(Action.ALLOW, ip_version=6),))
IN, OUT = "cali-pi-default/default.p", "cali-po-default/default.p"


def setup() -> tuple[PolicyManager, dict[tuple[str, int], RecordingTable]]:
    tables = {
        (t, v): RecordingTable(t, v) for t in ("filter", "raw", "mangle", "nat") for v in (4, 6)
    }
    return PolicyManager(RulesConfig(), tables.values()), tables


def names(tables: dict[tuple[str, int], RecordingTable]) -> dict[tuple[str, int], set[str]]:
    return {k: set(t.chains) for k, t in tables.items() if t.chains}


def test_normal_policy_goes_to_both_filter_tables_rendered_per_family() -> None:
    manager, tables = setup()
    manager.on_update(ActivePolicyUpdate(PID, POLICY))
    assert names(tables) == {("filter", 4): {IN, OUT}, ("filter", 6): {IN, OUT}}
    assert tables["filter", 4].chains[IN].rules[0].action is None  # IPv6-only rule skipped
    assert tables["filter", 6].chains[IN].rules[0].action is not None


def test_policy_moves_between_tables_when_its_kind_changes() -> None:
    manager, tables = setup()
    manager.on_update(ActivePolicyUpdate(PID, POLICY))
    untracked = ParsedPolicy(untracked=True, apply_on_forward=True)
    manager.on_update(ActivePolicyUpdate(PID, untracked))
    assert names(tables) == {("raw", 4): {IN, OUT}, ("raw", 6): {IN, OUT}}
    manager.on_update(ActivePolicyUpdate(PID, ParsedPolicy(pre_dnat=True, apply_on_forward=True)))
    assert names(tables) == {("mangle", 4): {IN, OUT}, ("mangle", 6): {IN, OUT}}
    manager.on_update(ActivePolicyRemove(PID))
    assert names(tables) == {}


def test_profiles_live_in_filter_only() -> None:
    manager, tables = setup()
    manager.on_update(ActiveProfileUpdate("kns.a", ParsedProfile()))
    both = {"cali-pri-kns.a", "cali-pro-kns.a"}
    assert names(tables) == {("filter", 4): both, ("filter", 6): both}
    manager.on_update(ActiveProfileRemove("kns.a"))
    manager.complete_deferred_work()
    assert names(tables) == {}
