"""Policy rendering semantics: port splitting, family filtering, actions, match blocks."""

from __future__ import annotations

from calico.calc.messages import (
    Action,
    ICMPMatch,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
    PortRange,
)
from calico.rules.config import RulesConfig
from calico.rules.model import RETURN, Log, Rule, SetMark
from calico.rules.policy import (
    iptables_protocol,
    policy_chains,
    profile_chains,
    rule_to_rules,
    split_ports,
)

CFG = RulesConfig()
PID = PolicyID("default", "default.p")


def port(n: int) -> PortRange:
    return PortRange(n, n)


def render(rules: list[Rule]) -> list[str]:
    return [r.spec() for r in rules]


def test_split_ports_counts_ranges_as_two_slots() -> None:
    assert split_ports([]) == []
    singles = [port(n) for n in range(1, 16)]
    assert split_ports(singles) == [singles]
    assert split_ports([*singles, port(16)]) == [singles, [port(16)]]
    ranges = [PortRange(n, n + 1) for n in range(0, 16, 2)]  # 8 ranges = 16 slots
    assert split_ports(ranges) == [ranges[:7], ranges[7:]]
    # A range never straddles two groups: 14 singles + a range -> the range moves on.
    fourteen = [port(n) for n in range(1, 15)]
    assert split_ports([*fourteen, PortRange(100, 200)]) == [fourteen, [PortRange(100, 200)]]


def test_every_group_fits_a_multiport_match() -> None:
    ports = [PortRange(n, n + (n % 3)) for n in range(1, 200)]
    groups = split_ports(ports)
    assert [p for g in groups for p in g] == ports
    for group in groups:
        assert sum(1 if p.first == p.last else 2 for p in group) <= 15


def test_protocol_spelling() -> None:
    assert iptables_protocol("ICMPv6") == "ipv6-icmp"
    assert iptables_protocol("UDPLite") == "udplite"
    assert iptables_protocol("TCP") == "tcp"
    assert iptables_protocol(132) == "132"


def test_rules_for_the_other_family_are_skipped() -> None:
    v6_only = ParsedRule(Action.ALLOW, ip_version=6)
    icmp4 = ParsedRule(Action.ALLOW, protocol="ICMP", icmp=ICMPMatch(8))
    icmp6 = ParsedRule(Action.ALLOW, protocol="ICMPv6")
    assert rule_to_rules(CFG, v6_only, 4, "p") == []
    assert rule_to_rules(CFG, icmp4, 6, "p") == []
    assert rule_to_rules(CFG, icmp6, 4, "p") == []
    assert rule_to_rules(CFG, icmp4, 4, "p") != []
    # A negated protocol of the other family still means "anything else".
    not_icmp = ParsedRule(Action.ALLOW, not_protocol="ICMP")
    assert render(rule_to_rules(CFG, not_icmp, 6, "p"))[0].startswith("! -p icmp")


def test_actions() -> None:
    allow = rule_to_rules(CFG, ParsedRule(Action.ALLOW, protocol="TCP"), 4, "p")
    assert allow == [
        Rule(allow[0].match, SetMark(0x10000, 0x10000)),
        Rule(allow[1].match, RETURN),
    ]
    assert render(allow) == [
        "-p tcp -j MARK --set-xmark 0x10000/0x10000",
        "-m mark --mark 0x10000/0x10000 -j RETURN",
    ]
    passing = rule_to_rules(CFG, ParsedRule(Action.PASS), 4, "p")
    assert render(passing)[0] == "-j MARK --set-xmark 0x20000/0x20000"
    deny = rule_to_rules(RulesConfig(filter_deny_action="REJECT"), ParsedRule(Action.DENY), 4, "")
    assert render(deny) == ["-j REJECT"]
    log = rule_to_rules(CFG, ParsedRule(Action.LOG), 4, "pfx")
    assert [r.action for r in log] == [Log("pfx")]


def test_single_port_alternative_stays_in_the_main_rule() -> None:
    rule = ParsedRule(Action.DENY, protocol="TCP", dst_named_port_ipset_ids=("n:a",))
    assert render(rule_to_rules(CFG, rule, 4, "")) == [
        "-p tcp -m set --match-set cali40n:a dst,dst -j DROP"
    ]


def test_numeric_and_named_ports_are_ored_through_a_mark_block() -> None:
    rule = ParsedRule(
        Action.DENY, protocol="TCP", dst_ports=(port(80),), dst_named_port_ipset_ids=("n:a",)
    )
    assert render(rule_to_rules(CFG, rule, 4, "")) == [
        "-j MARK --set-xmark 0x0/0xc0000",
        "-p tcp -m multiport --dports 80 -j MARK --set-xmark 0x40000/0x40000",
        "-m set --match-set cali40n:a dst,dst -j MARK --set-xmark 0x40000/0x40000",
        "-p tcp -m mark --mark 0x40000/0x40000 -j DROP",
    ]


def test_second_block_ands_through_scratch1() -> None:
    rule = ParsedRule(
        Action.DENY,
        protocol="UDP",
        src_ports=tuple(port(n) for n in range(1, 17)),
        dst_ports=(port(1), port(2)),
        dst_named_port_ipset_ids=("n:a",),
    )
    rendered = render(rule_to_rules(CFG, rule, 4, ""))
    assert rendered[0] == "-j MARK --set-xmark 0x0/0xc0000"
    assert sum("set-xmark 0x40000/0x40000" in r for r in rendered) == 2  # src groups
    assert sum("set-xmark 0x80000/0x80000" in r for r in rendered) == 2  # dst alternatives
    assert rendered[-2] == "-m mark --mark 0x0/0x80000 -j MARK --set-xmark 0x0/0x40000"
    assert rendered[-1] == "-p udp -m mark --mark 0x40000/0x40000 -j DROP"


def test_negated_ports_are_anded_without_a_block() -> None:
    rule = ParsedRule(
        Action.DENY, protocol="TCP", not_dst_ports=tuple(port(n) for n in range(1, 17))
    )
    (only,) = render(rule_to_rules(CFG, rule, 4, ""))
    assert only.count("-m multiport ! --dports") == 2


def test_chain_gets_comment_and_loses_trailing_returns() -> None:
    pol = ParsedPolicy(inbound_rules=(ParsedRule(Action.DENY), ParsedRule(Action.ALLOW)))
    inbound, outbound = policy_chains(CFG, PID, pol, 4)
    assert inbound.name == "cali-pi-default/default.p"
    assert render(list(inbound.rules)) == [
        '-m comment --comment "Policy default/default.p ingress" -j DROP',
        "-j MARK --set-xmark 0x10000/0x10000",
    ]
    assert render(list(outbound.rules)) == [
        '-m comment --comment "Policy default/default.p egress"'
    ]


def test_profile_chains_and_log_prefix_specifiers() -> None:
    cfg = RulesConfig(log_prefix="%k:%n")
    profile = ParsedProfile(outbound_rules=(ParsedRule(Action.LOG),))
    _, outbound = profile_chains(cfg, "kns.x", profile, 6)
    assert outbound.name == "cali-pro-kns.x"
    assert outbound.rules[0].action == Log("pro:kns.x")
    pol = ParsedPolicy(inbound_rules=(ParsedRule(Action.LOG),))
    namespaced = PolicyID("default", "knp.default.p", namespace="ns")
    inbound, _ = policy_chains(RulesConfig(log_prefix="%t|%p|%k"), namespaced, pol, 4)
    assert inbound.rules[0].action == Log("default|ns/knp.default.p|np")


def test_a_rule_shared_by_policies_is_translated_once_per_family_and_setting() -> None:
    """Translations are cached by (settings, rule, family, log prefix): two policies with
    the same rule share its Rule objects (texts rendered once), a family, a setting or a
    prefix of its own gets its own, and a caller changing its list changes no cache."""
    dns = ParsedRule(Action.ALLOW, protocol="UDP", dst_ports=(port(53),), dst_ipset_ids=("s:x",))
    quarantine = ParsedRule(Action.DENY, src_ipset_ids=("s:q",))
    a = ParsedPolicy(inbound_rules=(quarantine, dns), outbound_rules=(dns,))
    b = ParsedPolicy(inbound_rules=(quarantine, dns), outbound_rules=())
    in_a = policy_chains(CFG, PolicyID("default", "a"), a, 4)[0]
    in_b = policy_chains(CFG, PolicyID("default", "b"), b, 4)[0]
    assert all(x is y for x, y in zip(in_a.rules[1:], in_b.rules[1:], strict=True))
    v6 = rule_to_rules(CFG, dns, 6, "")
    assert render(v6) != render(rule_to_rules(CFG, dns, 4, "")) and "cali60" in render(v6)[0]
    reject = RulesConfig(filter_deny_action="REJECT")
    assert render(rule_to_rules(reject, quarantine, 4, ""))[0].endswith("-j REJECT")
    assert render(rule_to_rules(CFG, quarantine, 4, ""))[0].endswith("-j DROP")
    log = ParsedRule(Action.LOG)
    assert [r.action for r in rule_to_rules(CFG, log, 4, "x")] == [Log("x")]
    assert [r.action for r in rule_to_rules(CFG, log, 4, "y")] == [Log("y")]
    mine = rule_to_rules(CFG, dns, 4, "")
    mine.clear()
    assert len(rule_to_rules(CFG, dns, 4, "")) == 2
