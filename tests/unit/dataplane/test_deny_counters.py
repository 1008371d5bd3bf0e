"""Deny counters are attributed from the comments the renderer itself writes."""

from __future__ import annotations

from calico.calc.messages import (
    Action,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
    TierInfo,
    WorkloadEndpoint,
)
from calico.dataplane.drivers.deny_counters import parse_deny_counters
from calico.dataplane.drivers.iptables_render import render_full
from calico.rules import endpoints
from calico.rules.config import RulesConfig
from calico.rules.policy import policy_chains, profile_chains

POLICY = PolicyID("default", "default.deny-db")


def counted_save(cfg: RulesConfig) -> str:
    """An `iptables-save -c` of rendered chains where rule N of a chain counted N+1 packets of
    100 bytes each."""
    policy = ParsedPolicy(
        inbound_rules=(
            ParsedRule(Action.ALLOW, protocol="TCP"),
            ParsedRule(Action.DENY, protocol="UDP"),
            ParsedRule(Action.DENY),
        ),
        outbound_rules=(ParsedRule(Action.ALLOW),),
    )
    profile = ParsedProfile(outbound_rules=(ParsedRule(Action.DENY),))
    tier = TierInfo("default", ingress_policies=(POLICY,), egress_policies=(POLICY,))
    wep = WorkloadEndpoint("cali1", None, (), (), ("kns.shop",), (tier,))
    chains = [
        *policy_chains(cfg, POLICY, policy, 4),
        *profile_chains(cfg, "kns.shop", profile, 4),
        *endpoints.workload_endpoint_chains(cfg, wep),
    ]
    out, index = [], {}
    for line in render_full("filter", chains).splitlines():
        if line.startswith("-A "):
            chain = line.split()[1]
            index[chain] = index.get(chain, 0) + 1
            line = f"[{index[chain]}:{index[chain] * 100}] {line}"
        out.append(line)
    return "\n".join(out)


def test_denies_are_summed_per_policy_profile_and_default() -> None:
    counts = parse_deny_counters(counted_save(RulesConfig()))
    # An Allow renders as two rules (mark, return): the two denies are rules 3 and 4.
    assert counts[("policy", "default/default.deny-db", "ingress")] == (7, 700)
    assert ("policy", "default/default.deny-db", "egress") not in counts  # it only allows
    assert counts[("profile", "kns.shop", "egress")][0] >= 1
    assert ("end-of-tier", "default", "ingress") in counts
    assert ("end-of-tier", "default", "egress") in counts
    assert ("no-profile", "", "ingress") in counts
    assert all(kind != "policy" or name == "default/default.deny-db" for kind, name, _ in counts)


def test_reject_counts_as_deny_and_other_rules_do_not() -> None:
    counts = parse_deny_counters(counted_save(RulesConfig(filter_deny_action="REJECT")))
    assert counts[("policy", "default/default.deny-db", "ingress")] == (7, 700)
    unrelated = '[9:900] -A cali-pi-x -m comment --comment "Policy a/b ingress" -j ACCEPT'
    assert parse_deny_counters(unrelated) == {}
