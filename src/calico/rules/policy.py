"""Policy and profile chains: `cali-pi-`/`cali-po-` and `cali-pri-`/`cali-pro-`.

Inputs: `ParsedPolicy`/`ParsedProfile` (selectors and CIDR lists already turned into IP set
IDs by the calculation graph) and an IP version. Output: one inbound and one outbound chain.

Semantics (felix/rules/policy.go): rules run in order; a match on Allow sets the accept mark
and RETURNs, Pass sets the pass mark and RETURNs, Deny runs the configured deny action, Log
logs and carries on. No match falls off the end (returns with no mark). Within one rule every
criterion is ANDed; the numeric ports and named ports of one side are ORed, which a single
iptables rule cannot say, so when there is more than one alternative (more than 15 port
slots, or named ports alongside numeric ones) they become a "match block": preliminary rules
that set a scratch mark bit if any alternative matches, and the main rule also requires that
bit. Negated port lists are ANDed and need no block. Rules for the other IP family, or whose
protocol only exists in the other family (ICMP vs ICMPv6), are skipped: they can never match.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from calico.calc.messages import (
    Action,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
    PortRange,
)
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.model import (
    ANY,
    RETURN,
    Chain,
    Log,
    Match,
    Rule,
    SetMark,
    clear_mark,
    set_mark,
    verdict,
)

MAX_MULTIPORT_SLOTS = 15
_PROTOCOLS = {
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp",
    "icmpv6": "ipv6-icmp",
    "sctp": "sctp",
    "udplite": "udplite",
}
_FAMILY_OF_PROTOCOL = {"icmp": 4, "1": 4, "ipv6-icmp": 6, "58": 6}


def policy_chains(
    cfg: RulesConfig, policy_id: PolicyID, policy: ParsedPolicy, ip_version: int
) -> list[Chain]:
    """The inbound (`cali-pi-`) and outbound (`cali-po-`) chains of one policy."""
    ident = naming.policy_id_str(policy_id)
    prefix = _log_prefix(cfg.log_prefix, policy_id)
    return [
        _rules_chain(
            cfg,
            naming.policy_chain_name(policy_id, inbound=inbound),
            rules,
            ip_version,
            prefix,
            f"Policy {ident} {'ingress' if inbound else 'egress'}",
        )
        for inbound, rules in ((True, policy.inbound_rules), (False, policy.outbound_rules))
    ]


def policy_table(policy: ParsedPolicy) -> str:
    """The table a policy's chains live in: doNotTrack raw, preDNAT mangle, else filter."""
    return "raw" if policy.untracked else "mangle" if policy.pre_dnat else "filter"


def profile_chains(
    cfg: RulesConfig, profile_id: str, profile: ParsedProfile, ip_version: int
) -> list[Chain]:
    """The inbound (`cali-pri-`) and outbound (`cali-pro-`) chains of one profile."""
    prefix = _log_prefix(cfg.log_prefix, None, profile_id)
    return [
        _rules_chain(
            cfg,
            naming.profile_chain_name(profile_id, inbound=inbound),
            rules,
            ip_version,
            prefix,
            f"Profile {profile_id} {'ingress' if inbound else 'egress'}",
        )
        for inbound, rules in ((True, profile.inbound_rules), (False, profile.outbound_rules))
    ]


def _rules_chain(
    cfg: RulesConfig,
    name: str,
    rules: Sequence[ParsedRule],
    ip_version: int,
    log_prefix: str,
    chain_comment: str,
) -> Chain:
    out = [r for rule in rules for r in _translated(cfg, rule, ip_version, log_prefix)]
    # Trailing RETURNs are no-ops whatever they match (falling off the end returns too).
    while out and out[-1].action == RETURN:
        out.pop()
    first = out[0] if out else Rule()
    out[:1] = [Rule(first.match, first.action, (*first.comment, chain_comment))]
    return Chain(name, tuple(out))


def split_ports(ports: Sequence[PortRange]) -> list[list[PortRange]]:
    """Groups of at most 15 multiport slots; a single port takes one slot, a range two."""
    splits: list[list[PortRange]] = []
    free = 0
    for port in ports:
        slots = 1 if port.first == port.last else 2
        if slots > free:
            splits.append([])
            free = MAX_MULTIPORT_SLOTS
        splits[-1].append(port)
        free -= slots
    return splits


def iptables_protocol(proto: int | str) -> str:
    """Calico protocol name or number -> the spelling iptables takes."""
    if isinstance(proto, int):
        return str(proto)
    return _PROTOCOLS.get(proto.lower(), proto.lower())


def rule_applies(rule: ParsedRule, ip_version: int) -> bool:
    if rule.ip_version not in (None, ip_version):
        return False
    proto = None if rule.protocol is None else iptables_protocol(rule.protocol)
    return _FAMILY_OF_PROTOCOL.get(proto or "", ip_version) == ip_version


def rule_to_rules(
    cfg: RulesConfig, rule: ParsedRule, ip_version: int, log_prefix: str
) -> list[Rule]:
    """One Calico rule -> iptables rules (a match block, if needed, then the action rules)."""
    return list(_translated(cfg, rule, ip_version, log_prefix))


@functools.lru_cache(maxsize=16384)
def _translated(
    cfg: RulesConfig, rule: ParsedRule, ip_version: int, log_prefix: str
) -> tuple[Rule, ...]:
    """Cached: policies repeat rules (allow DNS, deny a quarantine selector: at scale L, 675
    distinct rules in 6,002), and each policy is rendered for both families and again at
    every update; the shared Rule objects also render their texts once."""
    if not rule_applies(rule, ip_version):
        return ()
    blocks = _MatchBlocks(cfg)
    proto = ANY if rule.protocol is None else ANY.protocol(iptables_protocol(rule.protocol))
    in_main: dict[str, bool] = {}
    for side, ports, named in (
        ("src", rule.src_ports, rule.src_named_port_ipset_ids),
        ("dst", rule.dst_ports, rule.dst_named_port_ipset_ids),
    ):
        splits = split_ports(ports)
        names = [naming.ipset_name(ip_version, i) for i in named]
        in_main[side] = len(splits) + len(names) <= 1
        if not in_main[side]:
            blocks.add_port_block(proto, side, splits, names)
    match = _main_match(rule, ip_version, src_ports=in_main["src"], dst_ports=in_main["dst"])
    if blocks.rules:
        match = match.mark_set(cfg.mark_scratch0)
    return (*blocks.rules, *_action_rules(cfg, rule.action, match, log_prefix))


class _MatchBlocks:
    """Felix's matchBlockBuilder, reduced to the port blocks our messages can need.

    The first block sets scratch0 ("all blocks passed") directly; a later block sets
    scratch1 and then clears scratch0 unless scratch1 got set, i.e. scratch0 &&= scratch1.
    """

    def __init__(self, cfg: RulesConfig) -> None:
        self.cfg = cfg
        self.rules: list[Rule] = []

    def add_port_block(
        self, proto: Match, side: str, splits: list[list[PortRange]], set_names: list[str]
    ) -> None:
        s0, s1 = self.cfg.mark_scratch0, self.cfg.mark_scratch1
        first = not self.rules
        if first:
            self.rules.append(Rule(action=SetMark(0, s0 | s1)))
        bit = s0 if first else s1
        self.rules += [Rule(proto.ports(side, split), set_mark(bit)) for split in splits]
        self.rules += [Rule(ANY.ipset(n, side, ip_port=True), set_mark(bit)) for n in set_names]
        if not first:
            self.rules.append(Rule(ANY.mark_clear(s1), clear_mark(s0)))


def _main_match(rule: ParsedRule, ip_version: int, *, src_ports: bool, dst_ports: bool) -> Match:
    """Positive criteria first, then negated ones, in Felix's order."""
    m = ANY if rule.protocol is None else ANY.protocol(iptables_protocol(rule.protocol))
    for side, set_ids, ports, named, use_ports in (
        ("src", rule.src_ipset_ids, rule.src_ports, rule.src_named_port_ipset_ids, src_ports),
        ("dst", rule.dst_ipset_ids, rule.dst_ports, rule.dst_named_port_ipset_ids, dst_ports),
    ):
        for set_id in set_ids:
            m = m.ipset(naming.ipset_name(ip_version, set_id), side)
        if use_ports and ports:
            m = m.ports(side, ports)
        if use_ports:
            for set_id in named:
                m = m.ipset(naming.ipset_name(ip_version, set_id), side, ip_port=True)
    if rule.icmp is not None:
        m = m.icmp(ip_version, rule.icmp.type, rule.icmp.code)
    return _negated_match(m, rule, ip_version)


def _negated_match(m: Match, rule: ParsedRule, ip_version: int) -> Match:
    if rule.not_protocol is not None:
        m = m.protocol(iptables_protocol(rule.not_protocol), negate=True)
    for side, set_ids, ports, named in (
        ("src", rule.not_src_ipset_ids, rule.not_src_ports, rule.not_src_named_port_ipset_ids),
        ("dst", rule.not_dst_ipset_ids, rule.not_dst_ports, rule.not_dst_named_port_ipset_ids),
    ):
        for set_id in set_ids:
            m = m.ipset(naming.ipset_name(ip_version, set_id), side, negate=True)
        for split in split_ports(ports):
            m = m.ports(side, split, negate=True)
        for set_id in named:
            m = m.ipset(naming.ipset_name(ip_version, set_id), side, ip_port=True, negate=True)
    if rule.not_icmp is not None:
        m = m.icmp(ip_version, rule.not_icmp.type, rule.not_icmp.code, negate=True)
    return m


def _action_rules(cfg: RulesConfig, action: Action, match: Match, log_prefix: str) -> list[Rule]:
    if action is Action.DENY:
        return [Rule(match, verdict(cfg.filter_deny_action))]
    if action is Action.LOG:
        return [Rule(match, Log(log_prefix))]
    mark = cfg.mark_accept if action is Action.ALLOW else cfg.mark_pass
    return [Rule(match, set_mark(mark)), Rule(ANY.mark_set(mark), RETURN)]


def _log_prefix(template: str, policy_id: PolicyID | None, profile_id: str = "") -> str:
    """Felix's LogPrefix specifiers: %t tier, %n name, %p namespace/name, %k kind."""
    if policy_id is None:
        values = {"%t": "", "%n": profile_id, "%p": profile_id, "%k": "pro"}
    else:
        ns_name = f"{policy_id.namespace}/{policy_id.name}" if policy_id.namespace else None
        kind = "np" if policy_id.namespace else "gnp"
        values = {
            "%t": policy_id.tier,
            "%n": policy_id.name,
            "%p": ns_name or policy_id.name,
            "%k": kind,
        }
    for spec, value in values.items():
        template = template.replace(spec, value)
    return template
