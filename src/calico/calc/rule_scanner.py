"""Policy and profile rules -> ParsedRules plus the IP sets they need (pure).

Every selector, CIDR list and named port a rule uses becomes an IP set referenced by ID:
- `s:<hash>`   endpoints matching a (namespace-compiled) selector — hash:net of their IPs;
- `net:<hash>` a rule's literal CIDR list — hash:net (a /0 is stored as two /1 halves,
               since hash:net cannot hold /0);
- `n:<hash>`   a named port on endpoints matching a selector — hash:ip,port;
- `svc:<hash>` a Kubernetes service match, which an etcd-mode cluster cannot resolve:
               it stays empty, so such a rule never matches (fail closed for Allow).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from calico.calc.items import port_protocol
from calico.calc.messages import (
    Action,
    ICMPMatch,
    IPSetType,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PortRange,
)
from calico.calc.selectors import entity_selector
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy, Profile
from calico.model.rules import EntityRule, ICMPFields, Rule
from calico.selector import Selector, make_unique_id, parse

ALL = parse("all()")
_ACTIONS = {"Allow": Action.ALLOW, "Deny": Action.DENY, "Log": Action.LOG, "Pass": Action.PASS}


@dataclass(frozen=True, slots=True)
class IPSetSpec:
    """How to compute an IP set's members."""

    id: str
    type: IPSetType
    selector: Selector | None = None  # s: and n: sets
    nets: frozenset[str] = field(default_factory=frozenset)  # net: sets
    port: tuple[str, str] | None = None  # n: sets: (protocol, port name)


Specs = dict[str, IPSetSpec]


def _split_zero(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    if net.prefixlen == 0:
        return [str(half) for half in net.subnets(prefixlen_diff=1)]
    return [str(net)]


def _net_set(nets: Sequence[str], specs: Specs) -> str:
    members = frozenset(
        m for text in nets for m in _split_zero(ipaddress.ip_network(text, strict=False))
    )
    set_id = make_unique_id("net:", ",".join(sorted(members)))
    specs[set_id] = IPSetSpec(set_id, IPSetType.NET, nets=members)
    return set_id


def _selector_set(selector: Selector, specs: Specs) -> str:
    set_id = selector.unique_id()
    specs[set_id] = IPSetSpec(set_id, IPSetType.NET, selector=selector)
    return set_id


def _named_port_set(selector: Selector | None, protocol: str, name: str, specs: Specs) -> str:
    sel = selector or ALL
    set_id = make_unique_id("n:", f"{sel} {protocol} {name}")
    specs[set_id] = IPSetSpec(set_id, IPSetType.IP_PORT, selector=sel, port=(protocol, name))
    return set_id


def _ports(
    ports: Sequence[int | str] | None, selector: Selector | None, protocol: str | None, specs: Specs
) -> tuple[tuple[PortRange, ...], tuple[str, ...]]:
    """Numeric ports and ranges inline; named ports as n: sets (ORed with the numeric ones)."""
    numeric: list[PortRange] = []
    named: list[str] = []
    for port in ports or []:
        if isinstance(port, int):
            numeric.append(PortRange(port, port))
        elif ":" in port and port.replace(":", "").isdigit():
            first, last = port.split(":")
            numeric.append(PortRange(int(first), int(last)))
        elif protocol is not None:
            named.append(_named_port_set(selector, protocol, port, specs))
    return tuple(numeric), tuple(named)


@dataclass(slots=True)
class _Side:
    ipsets: tuple[str, ...] = ()
    not_ipsets: tuple[str, ...] = ()
    ports: tuple[PortRange, ...] = ()
    not_ports: tuple[PortRange, ...] = ()
    named: tuple[str, ...] = ()
    not_named: tuple[str, ...] = ()


def _side(
    entity: EntityRule | None, namespace: str | None, proto: str | None, specs: Specs
) -> _Side:
    if entity is None:
        return _Side()
    selector = entity_selector(entity, namespace)
    positive: list[str] = []
    negative: list[str] = []
    if selector is not None:
        positive.append(_selector_set(selector, specs))
    if entity.nets:
        positive.append(_net_set(entity.nets, specs))
    if entity.notSelector:
        negative.append(_selector_set(parse(entity.notSelector), specs))
    if entity.notNets:
        negative.append(_net_set(entity.notNets, specs))
    ports, named = _ports(entity.ports, selector, proto, specs)
    not_ports, not_named = _ports(entity.notPorts, selector, proto, specs)
    return _Side(tuple(positive), tuple(negative), ports, not_ports, named, not_named)


def _icmp(fields: ICMPFields | None) -> ICMPMatch | None:
    if fields is None or fields.type is None:
        return None
    return ICMPMatch(fields.type, fields.code)


def parse_rule(rule: Rule, namespace: str | None, specs: Specs) -> ParsedRule:
    proto = port_protocol(rule.protocol)
    src = _side(rule.source, namespace, proto, specs)
    dst = _side(rule.destination, namespace, proto, specs)
    return ParsedRule(
        action=_ACTIONS[rule.action],
        ip_version=rule.ipVersion,
        protocol=rule.protocol,
        not_protocol=rule.notProtocol,
        src_ipset_ids=src.ipsets,
        not_src_ipset_ids=src.not_ipsets,
        src_ports=src.ports,
        not_src_ports=src.not_ports,
        src_named_port_ipset_ids=src.named,
        not_src_named_port_ipset_ids=src.not_named,
        dst_ipset_ids=dst.ipsets,
        not_dst_ipset_ids=dst.not_ipsets,
        dst_ports=dst.ports,
        not_dst_ports=dst.not_ports,
        dst_named_port_ipset_ids=dst.named,
        not_dst_named_port_ipset_ids=dst.not_named,
        icmp=_icmp(rule.icmp),
        not_icmp=_icmp(rule.notICMP),
    )


def parse_rules(
    rules: Sequence[Rule] | None, namespace: str | None, specs: Specs
) -> tuple[ParsedRule, ...]:
    return tuple(parse_rule(rule, namespace, specs) for rule in rules or [])


def parse_policy(policy: NetworkPolicy | GlobalNetworkPolicy) -> tuple[ParsedPolicy, Specs]:
    specs: Specs = {}
    namespace = policy.namespace if isinstance(policy, NetworkPolicy) else None
    spec = policy.spec
    is_global = isinstance(policy, GlobalNetworkPolicy)
    parsed = ParsedPolicy(
        inbound_rules=parse_rules(spec.ingress, namespace, specs),
        outbound_rules=parse_rules(spec.egress, namespace, specs),
        untracked=bool(is_global and getattr(spec, "doNotTrack", False)),
        pre_dnat=bool(is_global and getattr(spec, "preDNAT", False)),
        apply_on_forward=bool(is_global and getattr(spec, "applyOnForward", False)),
    )
    return parsed, specs


def parse_profile(profile: Profile) -> tuple[ParsedProfile, Specs]:
    specs: Specs = {}
    parsed = ParsedProfile(
        inbound_rules=parse_rules(profile.spec.ingress, None, specs),
        outbound_rules=parse_rules(profile.spec.egress, None, specs),
    )
    return parsed, specs


DROP_ALL_PROFILE = ParsedProfile(
    inbound_rules=(ParsedRule(Action.DENY),), outbound_rules=(ParsedRule(Action.DENY),)
)
