"""Top-level chains (`cali-INPUT`, `cali-FORWARD`, `cali-OUTPUT`, `cali-PREROUTING`,
`cali-POSTROUTING`), failsafes, `cali-wl-to-host`, anti-spoofing, and the hook rules that
send kernel chains into them.

Inputs: config and IP version (and, for raw, the workloads' allowed spoofed prefixes).
Outputs: chains per table plus `Hook`s for the table driver. Layout is Go Felix's
(felix/rules/static.go) without the IPIP/WireGuard/IPVS/BPF branches:

- filter INPUT -> cali-INPUT: from a workload prefix -> goto cali-wl-to-host (ICMPv6 router
  traffic, OpenStack allowances, workload egress policy, then DefaultEndpointToHostAction);
  otherwise accept what raw/mangle accepted, clear marks, host endpoint policy, accept on mark.
  With VXLAN in use (per family), first: accept VXLAN (UDP to the VXLAN port) from the
  `all-vxlan-net` set (every VTEP's parent address) to a local address; drop other VXLAN to
  a local address.
- filter FORWARD -> cali-FORWARD: clear marks (keeping accept), forward HEP policy, workload
  egress then ingress policy, forward HEP egress. Appended at the END of FORWARD (so other
  FORWARD rules still get their say): accept on the accept mark, else set it for mangle.
- filter OUTPUT -> cali-OUTPUT: host -> workload is not policed (RETURN); otherwise host
  endpoint egress policy (non-DNATed traffic; DNATed traffic is policed in mangle). With
  VXLAN in use, VXLAN from a local address to `all-vxlan-net` is accepted ahead of host
  endpoint policy, so a host policy cannot cut the overlay.
- raw PREROUTING -> cali-PREROUTING: mark workload traffic, skip RPF for allowed spoofed
  prefixes (cali-rpf-skip), drop workload packets failing strict reverse-path check;
  untracked host endpoint policy for the rest. raw OUTPUT -> untracked egress policy.
- mangle PREROUTING -> pre-DNAT host endpoint policy; POSTROUTING -> egress policy for
  DNATed host traffic.
- nat PREROUTING/OUTPUT/POSTROUTING -> the nat table's cali- chains (`calico.rules.nat`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from calico.calc.messages import PortRange, WorkloadEndpoint
from calico.rules import naming
from calico.rules.config import ProtoPort, RulesConfig
from calico.rules.model import (
    ACCEPT,
    ANY,
    RETURN,
    Chain,
    Goto,
    Hook,
    Jump,
    Match,
    Rule,
    clear_mark,
    set_mark,
    verdict,
)

ICMPV6_ROUTER_TYPES = (130, 131, 132, 133, 135, 136)


def _port(port: int) -> list[PortRange]:
    return [PortRange(port, port)]


def static_filter_chains(cfg: RulesConfig, ip_version: int, *, vxlan: bool = False) -> list[Chain]:
    """`vxlan`: VXLAN is in use in this family (this host has a VTEP in it)."""
    return [
        _filter_input(cfg, ip_version, vxlan),
        _workload_to_host(cfg, ip_version),
        failsafe_chain(cfg, ip_version, inbound=True, table="filter"),
        _filter_forward(cfg),
        _filter_output(cfg, ip_version, vxlan),
        failsafe_chain(cfg, ip_version, inbound=False, table="filter"),
    ]


def static_raw_chains(
    cfg: RulesConfig, ip_version: int, workloads: Iterable[WorkloadEndpoint] = ()
) -> list[Chain]:
    """Raw chains; `workloads` supply cali-rpf-skip (their allowSpoofedSourcePrefixes)."""
    clear = Rule(action=clear_mark(cfg.all_marks))
    accept_on_mark = Rule(ANY.mark_set(cfg.mark_accept), ACCEPT)
    output = (clear, Rule(action=Jump(naming.CHAIN_TO_HOST_ENDPOINT)), accept_on_mark)
    return [
        Chain(naming.CHAIN_PREROUTING, tuple(_raw_prerouting(cfg, ip_version))),
        Chain(naming.CHAIN_OUTPUT, output),
        rpf_skip_chain(workloads, ip_version),
        failsafe_chain(cfg, ip_version, inbound=True, table="raw"),
        failsafe_chain(cfg, ip_version, inbound=False, table="raw"),
    ]


def static_mangle_chains(cfg: RulesConfig, ip_version: int) -> list[Chain]:
    allow = verdict(cfg.mangle_allow_action)
    accepted = ANY.mark_set(cfg.mark_accept)
    hep_accepted = ("Host endpoint policy accepted packet.",)
    prerouting = (
        Rule(ANY.ct_state("RELATED,ESTABLISHED"), allow),
        Rule(accepted, allow),
        Rule(action=Jump(naming.CHAIN_FROM_HOST_ENDPOINT)),
        Rule(accepted, allow, hep_accepted),
    )
    postrouting = (
        Rule(accepted, RETURN),
        Rule(action=clear_mark(cfg.all_marks)),
        Rule(ANY.ct_state("DNAT"), Jump(naming.CHAIN_TO_HOST_ENDPOINT)),
        Rule(accepted, RETURN, hep_accepted),
    )
    return [
        Chain(naming.CHAIN_PREROUTING, prerouting),
        Chain(naming.CHAIN_POSTROUTING, postrouting),
        failsafe_chain(cfg, ip_version, inbound=True, table="mangle"),
        failsafe_chain(cfg, ip_version, inbound=False, table="mangle"),
    ]


def hooks(cfg: RulesConfig, table: str) -> list[Hook]:
    """The rules to put into the kernel's own chains of `table` (raw, mangle, nat, filter)."""
    if table == "filter":
        forward_end = (
            Rule(
                ANY.mark_set(cfg.mark_accept),
                verdict(cfg.filter_allow_action),
                ("Policy explicitly accepted packet.",),
            ),
            Rule(action=set_mark(cfg.mark_accept)),
        )
        return [
            Hook("INPUT", _jump(naming.CHAIN_INPUT)),
            Hook("FORWARD", _jump(naming.CHAIN_FORWARD), forward_end),
            Hook("OUTPUT", _jump(naming.CHAIN_OUTPUT)),
        ]
    if table == "raw":
        return [
            Hook("PREROUTING", _jump(naming.CHAIN_PREROUTING)),
            Hook("OUTPUT", _jump(naming.CHAIN_OUTPUT)),
        ]
    if table == "mangle":
        return [
            Hook("PREROUTING", _jump(naming.CHAIN_PREROUTING)),
            Hook("POSTROUTING", _jump(naming.CHAIN_POSTROUTING)),
        ]
    if table == "nat":
        return [
            Hook("PREROUTING", _jump(naming.CHAIN_PREROUTING)),
            Hook("POSTROUTING", _jump(naming.CHAIN_POSTROUTING)),
            Hook("OUTPUT", _jump(naming.CHAIN_OUTPUT)),
        ]
    raise ValueError(f"no Calico hooks for table {table!r}")


def _jump(chain: str) -> tuple[Rule, ...]:
    return (Rule(action=Jump(chain)),)


def _workload_ifaces(cfg: RulesConfig) -> list[Match]:
    return [ANY.in_iface(p + "+") for p in cfg.workload_iface_prefixes]


def _vxlan(cfg: RulesConfig) -> Match:
    return ANY.protocol("udp").ports("dst", _port(cfg.vxlan_port))


def _filter_input(cfg: RulesConfig, ip_version: int, vxlan: bool) -> Chain:
    allow = verdict(cfg.filter_allow_action)
    accepted = ANY.mark_set(cfg.mark_accept)
    rules = []
    if vxlan:
        vteps = naming.ipset_name(ip_version, naming.IPSET_ID_ALL_VXLAN_NET)
        to_host = _vxlan(cfg).dst_addr_local()
        rules += [
            Rule(
                to_host.ipset(vteps, "src"),
                allow,
                (f"Allow IPv{ip_version} VXLAN packets from allowed hosts",),
            ),
            Rule(
                to_host,
                verdict(cfg.filter_deny_action),
                (f"Drop IPv{ip_version} VXLAN packets from non-allowed hosts",),
            ),
        ]
    rules += [Rule(m, Goto(naming.CHAIN_WL_TO_HOST)) for m in _workload_ifaces(cfg)]
    rules += [
        Rule(accepted, allow),
        Rule(action=clear_mark(cfg.all_marks)),
        Rule(action=Jump(naming.CHAIN_FROM_HOST_ENDPOINT)),
        Rule(accepted, allow, ("Host endpoint policy accepted packet.",)),
    ]
    return Chain(naming.CHAIN_INPUT, tuple(rules))


def _workload_to_host(cfg: RulesConfig, ip_version: int) -> Chain:
    allow = verdict(cfg.filter_allow_action)
    rules = []
    if ip_version == 6:
        # Router duties (MLD, RS, NS/NA) bypass egress policy so users cannot cut them off.
        icmp6 = ANY.protocol("ipv6-icmp")
        rules += [Rule(icmp6.icmp(6, t), allow) for t in ICMPV6_ROUTER_TYPES]
    if cfg.openstack_enabled:
        rules += _openstack_to_host(cfg, ip_version)
    rules.append(Rule(action=Jump(naming.CHAIN_FROM_WL_DISPATCH)))
    rules.append(
        Rule(
            action=verdict(cfg.endpoint_to_host_action),
            comment=("Configured DefaultEndpointToHostAction",),
        )
    )
    return Chain(naming.CHAIN_WL_TO_HOST, tuple(rules))


def _openstack_to_host(cfg: RulesConfig, ip_version: int) -> list[Rule]:
    """Metadata (IPv4), DHCP and DNS from VMs to the host, ahead of their egress policy."""
    allow = verdict(cfg.filter_allow_action)
    rules = []
    if ip_version == 4 and cfg.metadata_addr:
        metadata = ANY.protocol("tcp").dst_net(cfg.metadata_addr)
        rules.append(Rule(metadata.ports("dst", _port(cfg.metadata_port)), allow))
    client, server = (68, 67) if ip_version == 4 else (546, 547)
    udp = ANY.protocol("udp")
    rules.append(Rule(udp.ports("src", _port(client)).ports("dst", _port(server)), allow))
    rules.append(Rule(udp.ports("dst", _port(53)), allow))
    return rules


def _filter_forward(cfg: RulesConfig) -> Chain:
    rules = [
        # Keep the accept bit: raw/mangle (untracked, pre-DNAT policy) may have set it.
        Rule(action=clear_mark(cfg.all_marks & ~cfg.mark_accept)),
        Rule(ANY.mark_clear(cfg.mark_accept), Jump(naming.CHAIN_FROM_HEP_FORWARD)),
    ]
    for prefix in cfg.workload_iface_prefixes:
        rules.append(Rule(ANY.in_iface(prefix + "+"), Jump(naming.CHAIN_FROM_WL_DISPATCH)))
        rules.append(Rule(ANY.out_iface(prefix + "+"), Jump(naming.CHAIN_TO_WL_DISPATCH)))
    rules.append(Rule(action=Jump(naming.CHAIN_TO_HEP_FORWARD)))
    return Chain(naming.CHAIN_FORWARD, tuple(rules))


def _filter_output(cfg: RulesConfig, ip_version: int, vxlan: bool) -> Chain:
    allow = verdict(cfg.filter_allow_action)
    accepted = ANY.mark_set(cfg.mark_accept)
    rules = [Rule(accepted, allow)]
    # Host -> local workload is not policed by the workload's ingress policy.
    rules += [Rule(ANY.out_iface(p + "+"), RETURN) for p in cfg.workload_iface_prefixes]
    if vxlan:
        vteps = naming.ipset_name(ip_version, naming.IPSET_ID_ALL_VXLAN_NET)
        rules.append(
            Rule(
                _vxlan(cfg).src_addr_local().ipset(vteps, "dst"),
                allow,
                (f"Allow IPv{ip_version} VXLAN packets to other allowed hosts",),
            )
        )
    rules += [
        Rule(action=clear_mark(cfg.all_marks)),
        Rule(ANY.ct_state("DNAT", negate=True), Jump(naming.CHAIN_TO_HOST_ENDPOINT)),
        Rule(accepted, allow, ("Host endpoint policy accepted packet.",)),
    ]
    return Chain(naming.CHAIN_OUTPUT, tuple(rules))


def _raw_prerouting(cfg: RulesConfig, ip_version: int) -> list[Rule]:
    from_wl = cfg.mark_scratch0
    rules = [Rule(action=clear_mark(cfg.all_marks))]
    rules += [Rule(m, set_mark(from_wl)) for m in _workload_ifaces(cfg)]
    rules.append(Rule(ANY.mark_set(from_wl), Jump(naming.CHAIN_RPF_SKIP)))
    if cfg.openstack_enabled and ip_version == 4:
        # DHCPDISCOVER comes from 0.0.0.0, which no reverse-path check accepts.
        dhcp = ANY.protocol("udp").src_net("0.0.0.0").ports("src", _port(68))
        rules.append(Rule(dhcp.ports("dst", _port(67)), ACCEPT))
    rules += [
        Rule(ANY.mark_set(from_wl).rpf_failed(), verdict(cfg.filter_deny_action)),
        Rule(ANY.mark_clear(from_wl), Jump(naming.CHAIN_FROM_HOST_ENDPOINT)),
        Rule(ANY.mark_set(cfg.mark_accept), ACCEPT),
    ]
    return rules


def rpf_skip_chain(workloads: Iterable[WorkloadEndpoint], ip_version: int) -> Chain:
    """`cali-rpf-skip`: accept (in raw) sources a workload may legitimately spoof."""
    rules = []
    for ep in sorted(workloads, key=lambda e: e.interface_name):
        for prefix in ep.allow_spoofed_source_prefixes:
            if ipaddress.ip_network(prefix, strict=False).version == ip_version:
                rules.append(Rule(ANY.in_iface(ep.interface_name).src_net(prefix), ACCEPT))
    return Chain(naming.CHAIN_RPF_SKIP, tuple(rules))


def failsafe_chain(cfg: RulesConfig, ip_version: int, *, inbound: bool, table: str) -> Chain:
    """`cali-failsafe-in`/`-out`: always-open host ports, ahead of host endpoint policy.

    In raw (before conntrack) the replies of the opposite direction are let through too,
    so that untracked policy cannot strand half of a failsafe connection.
    """
    own, opposite = (
        (cfg.failsafe_inbound, cfg.failsafe_outbound)
        if inbound
        else (cfg.failsafe_outbound, cfg.failsafe_inbound)
    )
    rules = [_failsafe_rule(pp, ip_version, "dst", inbound) for pp in own]
    if table == "raw":
        rules += [_failsafe_rule(pp, ip_version, "src", inbound) for pp in opposite]
    name = naming.CHAIN_FAILSAFE_IN if inbound else naming.CHAIN_FAILSAFE_OUT
    return Chain(name, tuple(r for r in rules if r is not None))


def _failsafe_rule(pp: ProtoPort, ip_version: int, port_side: str, inbound: bool) -> Rule | None:
    if pp.net is not None and pp.ip_version() != ip_version:
        return None
    match = ANY.protocol(pp.protocol).ports(port_side, _port(pp.port))
    if pp.net is not None:
        # The peer is the source of inbound traffic and the destination of outbound.
        match = match.src_net(pp.net) if inbound else match.dst_net(pp.net)
    return Rule(match, ACCEPT)
