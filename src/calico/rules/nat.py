"""The nat table: floating IPs (workload NAT mappings) and IP pools' natOutgoing.

Layout is Go Felix's (felix/rules/static.go `StaticNATTableChains`, felix/rules/nat.go and
the floating IP / masquerade managers of felix/dataplane/linux):

- nat PREROUTING -> cali-PREROUTING -> cali-fip-dnat (and, with the OpenStack special cases,
  the metadata DNAT 169.254.169.254:80 -> MetadataAddr:MetadataPort, IPv4);
  nat OUTPUT -> cali-OUTPUT -> cali-fip-dnat, so the host itself reaches floating IPs too.
- cali-fip-dnat: per external IP, `-d <external> -j DNAT --to-destination <internal>`.
- nat POSTROUTING -> cali-POSTROUTING -> cali-fip-snat, then cali-nat-outgoing.
- cali-fip-snat: only for hairpin (a workload reaching itself through its own floating IP):
  `-d <internal> -s <internal> -j SNAT --to-source <external>`, else it would receive a
  packet from its own address.
- cali-nat-outgoing: masquerade what comes from a natOutgoing pool and goes outside every
  pool (IP sets `masq-ipam-pools`, `all-ipam-pools`); empty while no pool of the family
  has natOutgoing.

A floating IP is also routed to the endpoint's interface (the endpoint manager adds the
/32 or /128), which BIRD learns from the kernel and advertises if it lies in an IP pool;
in a VXLAN pool, the other hosts' Felix route it to the endpoint's host themselves
(calico.calc.vxlan_resolver).
Mappings apply when FloatingIPs is Enabled, and always to OpenStack endpoints (as Felix).
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.calc.endpoint_messages import nats_apply
from calico.calc.messages import IPAMPool, NatMapping, PortRange, WorkloadEndpoint
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.model import (
    ANY,
    DNAT,
    RETURN,
    SNAT,
    Action,
    Chain,
    Jump,
    Masquerade,
    Rule,
)

METADATA_IP = "169.254.169.254/32"


def static_nat_chains(cfg: RulesConfig, ip_version: int) -> list[Chain]:
    prerouting = [Rule(action=Jump(naming.CHAIN_FIP_DNAT))]
    if ip_version == 4 and cfg.openstack_enabled and cfg.metadata_addr:
        to_metadata = ANY.protocol("tcp").dst_net(METADATA_IP).ports("dst", [PortRange(80, 80)])
        target = DNAT(f"{cfg.metadata_addr}:{cfg.metadata_port}")
        prerouting.append(Rule(to_metadata, target))
    postrouting = (
        Rule(action=Jump(naming.CHAIN_FIP_SNAT)),
        Rule(action=Jump(naming.CHAIN_NAT_OUTGOING)),
    )
    return [
        Chain(naming.CHAIN_PREROUTING, tuple(prerouting)),
        Chain(naming.CHAIN_POSTROUTING, postrouting),
        Chain(naming.CHAIN_OUTPUT, (Rule(action=Jump(naming.CHAIN_FIP_DNAT)),)),
    ]


def pool_sets(pools: Iterable[IPAMPool]) -> tuple[set[str], set[str]]:
    """The members (both families) of `all-ipam-pools` and `masq-ipam-pools`."""
    pools = list(pools)
    return {p.cidr for p in pools}, {p.cidr for p in pools if p.masquerade}


def nat_outgoing_active(masq_cidrs: Iterable[str], ip_version: int) -> bool:
    """`cali-nat-outgoing` has rules in `ip_version`: a pool of that family has natOutgoing."""
    return any((6 if ":" in cidr else 4) == ip_version for cidr in masq_cidrs)


def nat_outgoing_chain(cfg: RulesConfig, ip_version: int, active: bool) -> Chain:
    """`cali-nat-outgoing`; `active`: some pool of this family has natOutgoing."""
    if not active:
        return Chain(naming.CHAIN_NAT_OUTGOING)
    rf = cfg.nat_random_fully
    # NATOutgoingAddress is an IPv4 address (Felix would put it into ip6tables too, which
    # the kernel rejects); IPv6 keeps masquerading.
    address = cfg.nat_outgoing_address if ip_version == 4 else None
    default: Action = SNAT(address, rf) if address else Masquerade(random_fully=rf)
    if cfg.nat_port_range is None:
        return Chain(naming.CHAIN_NAT_OUTGOING, (_masq_rule(cfg, ip_version, None, default),))
    ports = f"{cfg.nat_port_range[0]}-{cfg.nat_port_range[1]}"
    ranged: Action = SNAT(f"{address}:{ports}", rf) if address else Masquerade(ports, rf)
    # Port ranges only exist for TCP and UDP; other protocols take the plain rule.
    rules = []
    for proto in ("tcp", "udp"):
        rules.append(_masq_rule(cfg, ip_version, proto, ranged))
        rules.append(_masq_rule(cfg, ip_version, proto, RETURN))
    rules.append(_masq_rule(cfg, ip_version, None, default))
    return Chain(naming.CHAIN_NAT_OUTGOING, tuple(rules))


def _masq_rule(cfg: RulesConfig, ip_version: int, proto: str | None, action: Action) -> Rule:
    match = ANY.ipset(naming.ipset_name(ip_version, naming.IPSET_ID_MASQ_POOLS), "src")
    match = match.ipset(
        naming.ipset_name(ip_version, naming.IPSET_ID_ALL_POOLS), "dst", negate=True
    )
    if proto is not None:
        match = match.protocol(proto)
    if cfg.nat_outgoing_iface:
        match = match.out_iface(cfg.nat_outgoing_iface)
    return Rule(match, action)


def endpoint_nats(
    cfg: RulesConfig, ep: WorkloadEndpoint, ip_version: int
) -> tuple[NatMapping, ...]:
    """The NAT mappings of `ep` Felix programs in `ip_version`."""
    if not nats_apply(cfg.floating_ips, ep.orchestrator):
        return ()
    return ep.ipv4_nats if ip_version == 4 else ep.ipv6_nats


def floating_ip_chains(
    cfg: RulesConfig, endpoints: Iterable[WorkloadEndpoint], ip_version: int
) -> list[Chain]:
    """`cali-fip-dnat` and `cali-fip-snat` for the local endpoints' mappings.

    An external IP claimed twice goes to the (string-)smallest internal IP, and an internal
    IP with several external IPs is hairpin-SNATed to the smallest of them, as in Felix, so
    the result does not depend on the order endpoints arrived in."""
    dnats: dict[str, str] = {}
    for ep in endpoints:
        for nat in endpoint_nats(cfg, ep, ip_version):
            known = dnats.get(nat.external_ip)
            if known is None or nat.internal_ip < known:
                dnats[nat.external_ip] = nat.internal_ip
    snats: dict[str, str] = {}
    for external, internal in dnats.items():
        if internal not in snats or external < snats[internal]:
            snats[internal] = external
    dnat_rules = tuple(Rule(ANY.dst_net(e), DNAT(dnats[e])) for e in sorted(dnats))
    snat_rules = tuple(
        Rule(ANY.dst_net(i).src_net(i), SNAT(snats[i], cfg.nat_random_fully)) for i in sorted(snats)
    )
    return [Chain(naming.CHAIN_FIP_DNAT, dnat_rules), Chain(naming.CHAIN_FIP_SNAT, snat_rules)]
