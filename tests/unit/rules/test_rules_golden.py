"""Messages -> iptables-restore text, for IPv4 and IPv6, against reviewed golden files."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from calico.calc.messages import (
    Action,
    HostEndpoint,
    ICMPMatch,
    NatMapping,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
    PortRange,
    TierInfo,
    WorkloadEndpoint,
)
from calico.dataplane.drivers.iptables_render import render_full
from calico.rules import dispatch, endpoints, nat, policy, static
from calico.rules.config import ProtoPort, RulesConfig
from calico.rules.model import Chain, Hook

CheckGolden = Callable[[str, str], None]
CFG = RulesConfig()
WEB = PolicyID("default", "default.allow-web")
SEC = PolicyID("security", "security.quarantine")
NS_POL = PolicyID("default", "knp.default.db-access", namespace="prod")


def both_families(
    table: str, render: Callable[[int], Sequence[Chain]], hooks: Sequence[Hook] = ()
) -> str:
    return "".join(f"# IPv{v}\n{render_full(table, render(v), hooks)}" for v in (4, 6))


def ports(*numbers: int) -> tuple[PortRange, ...]:
    return tuple(PortRange(n, n) for n in numbers)


EVERY_MATCH = ParsedPolicy(
    inbound_rules=(
        ParsedRule(
            Action.ALLOW,
            protocol="TCP",
            src_ipset_ids=("s:frontends",),
            not_src_ipset_ids=("s:quarantined",),
            src_ports=(PortRange(1024, 65535),),
            dst_ipset_ids=("s:web",),
            dst_ports=ports(80, 443),
            not_dst_ports=(PortRange(8000, 8080),),
        ),
        # >15 port slots plus a named port: ORed through a scratch-mark block.
        ParsedRule(
            Action.ALLOW,
            protocol="TCP",
            dst_ports=(*ports(*range(1, 14)), PortRange(100, 200), PortRange(300, 400)),
            dst_named_port_ipset_ids=("n:http",),
        ),
        # Source and destination blocks: the second one uses scratch1.
        ParsedRule(
            Action.PASS,
            protocol="UDP",
            src_ports=ports(53),
            src_named_port_ipset_ids=("n:dns",),
            dst_ports=ports(5353),
            dst_named_port_ipset_ids=("n:mdns",),
        ),
        ParsedRule(Action.ALLOW, ip_version=4, protocol="ICMP", icmp=ICMPMatch(8, 0)),
        ParsedRule(Action.DENY, protocol="ICMPv6", not_icmp=ICMPMatch(128)),
        ParsedRule(Action.ALLOW, ip_version=6, protocol=58, icmp=ICMPMatch(128)),
        ParsedRule(Action.LOG, not_protocol="UDPLite", not_dst_ipset_ids=("s:blocked",)),
        ParsedRule(
            Action.DENY,
            protocol="SCTP",
            not_src_named_port_ipset_ids=("n:sctp-a",),
            not_dst_named_port_ipset_ids=("n:sctp-b",),
            not_src_ports=ports(*range(20, 40)),
        ),
        ParsedRule(Action.ALLOW),
    ),
    outbound_rules=(ParsedRule(Action.DENY, protocol=17, dst_ipset_ids=("net:ext",)),),
)


def test_policy_with_every_match_type(golden: CheckGolden) -> None:
    text = both_families("filter", lambda v: policy.policy_chains(CFG, WEB, EVERY_MATCH, v))
    golden("policy_every_match", text)


def test_policies_and_profiles_reject_and_log_prefix(golden: CheckGolden) -> None:
    cfg = RulesConfig(filter_deny_action="REJECT", log_prefix="cali-%t-%p")
    deny_log = ParsedPolicy(
        inbound_rules=(ParsedRule(Action.LOG), ParsedRule(Action.DENY, protocol="TCP")),
    )
    profile = ParsedProfile(
        inbound_rules=(ParsedRule(Action.ALLOW, src_ipset_ids=("s:same-ns",)),),
        outbound_rules=(ParsedRule(Action.ALLOW),),
    )

    def render(v: int) -> list[Chain]:
        return [
            *policy.policy_chains(cfg, NS_POL, deny_log, v),
            *policy.profile_chains(cfg, "kns.prod", profile, v),
        ]

    golden("policy_profile_reject", both_families("filter", render))


def test_workload_endpoint_two_tiers_and_profiles(golden: CheckGolden) -> None:
    ep = WorkloadEndpoint(
        interface_name="cali12345678901",
        mac="ee:ee:ee:ee:ee:ee",
        ipv4_nets=("198.18.1.1/32",),
        ipv6_nets=("2001:db8::1/128",),
        profile_ids=("kns.prod", "ksa.prod.default"),
        tiers=(
            TierInfo("security", ingress_policies=(SEC,), egress_policies=(SEC,)),
            TierInfo("default", ingress_policies=(WEB, NS_POL)),
        ),
    )
    golden(
        "endpoint_two_tiers",
        both_families("filter", lambda v: endpoints.workload_endpoint_chains(CFG, ep)),
    )


def test_tier_with_pass_default_and_pass_rules(golden: CheckGolden) -> None:
    ep = WorkloadEndpoint(
        interface_name="calipass",
        mac=None,
        ipv4_nets=(),
        ipv6_nets=(),
        profile_ids=("kns.prod",),
        tiers=(
            TierInfo("admin", default_action=Action.PASS, egress_policies=(SEC,)),
            TierInfo("default", egress_policies=(WEB,)),
        ),
    )
    passing = ParsedPolicy(outbound_rules=(ParsedRule(Action.PASS, dst_ipset_ids=("s:x",)),))

    def render(v: int) -> list[Chain]:
        return [
            *endpoints.workload_endpoint_chains(CFG, ep),
            *policy.policy_chains(CFG, SEC, passing, v),
        ]

    golden("endpoint_pass_tier", both_families("filter", render))


def test_endpoint_without_policy_or_profile_drops_all(golden: CheckGolden) -> None:
    ep = WorkloadEndpoint("calinone", None, ("198.18.1.9/32",), (), (), ())
    admin_down = WorkloadEndpoint("calidown", None, (), (), ("kns.prod",), ())

    def render(v: int) -> list[Chain]:
        return [
            *endpoints.workload_endpoint_chains(CFG, ep),
            *endpoints.workload_endpoint_chains(CFG, admin_down, admin_up=False),
        ]

    golden("endpoint_no_policy", both_families("filter", render))


def test_dispatch_with_several_endpoints(golden: CheckGolden) -> None:
    names = ["calia1", "calia2", "calib1", "cali0000", "cali0001", "calia3"]
    golden(
        "dispatch",
        both_families("filter", lambda v: dispatch.workload_dispatch_chains(CFG, names)),
    )


def test_static_chains_all_tables(golden: CheckGolden) -> None:
    cfg = RulesConfig(
        workload_iface_prefixes=("cali", "tap"),
        endpoint_to_host_action="ACCEPT",
        failsafe_inbound=(ProtoPort("tcp", 22), ProtoPort("tcp", 179, "198.18.0.0/16")),
        failsafe_outbound=(ProtoPort("udp", 53, "2001:db8::/32"),),
    )
    spoofer = WorkloadEndpoint(
        "tap1",
        None,
        (),
        (),
        (),
        (),
        allow_spoofed_source_prefixes=("198.19.0.0/16", "2001:db8:5::/48"),
    )
    text = "".join(
        [
            both_families(
                "raw",
                lambda v: static.static_raw_chains(cfg, v, [spoofer]),
                static.hooks(cfg, "raw"),
            ),
            both_families(
                "mangle", lambda v: static.static_mangle_chains(cfg, v), static.hooks(cfg, "mangle")
            ),
            both_families(
                "filter", lambda v: static.static_filter_chains(cfg, v), static.hooks(cfg, "filter")
            ),
        ]
    )
    golden("static", text)


def test_static_filter_chains_with_vxlan(golden: CheckGolden) -> None:
    cfg = RulesConfig(vxlan_port=8472, filter_deny_action="REJECT")
    render = lambda v: static.static_filter_chains(cfg, v, vxlan=True)  # noqa: E731
    golden("static_vxlan", both_families("filter", render, static.hooks(cfg, "filter")))


def test_host_endpoint_chains_and_dispatch(golden: CheckGolden) -> None:
    hep = HostEndpoint(
        interface_name="eth0",
        expected_ipv4_addrs=("198.18.0.1",),
        expected_ipv6_addrs=(),
        profile_ids=("hep-profile",),
        tiers=(TierInfo("default", ingress_policies=(WEB,)),),
        untracked_tiers=(TierInfo("default", ingress_policies=(SEC,)),),
        pre_dnat_tiers=(TierInfo("default", ingress_policies=(NS_POL,)),),
    )

    def by_table(table: str) -> Callable[[int], list[Chain]]:
        def render(v: int) -> list[Chain]:
            if table == "raw":
                return [
                    *endpoints.host_endpoint_raw_chains(CFG, "eth0", hep),
                    *dispatch.host_raw_dispatch_chains(CFG, ["eth0", "*"]),
                ]
            if table == "mangle":
                return [
                    *endpoints.host_endpoint_mangle_chains(CFG, "eth0", hep),
                    *dispatch.host_mangle_dispatch_chains(CFG, ["eth0"], ["eth0"]),
                ]
            return [
                *endpoints.host_endpoint_filter_chains(CFG, "eth0", hep),
                *dispatch.host_filter_dispatch_chains(["eth0", "eth1", "*"]),
            ]

        return render

    text = "".join(both_families(t, by_table(t)) for t in ("raw", "mangle", "filter"))
    golden("host_endpoint", text)


def test_nat_table(golden: CheckGolden) -> None:
    """Static nat chains (OpenStack metadata DNAT), floating IPs with a hairpin SNAT, and
    natOutgoing with NATOutgoingAddress, NATPortRange and an interface filter."""
    cfg = RulesConfig(
        workload_iface_prefixes=("tap",),
        floating_ips=True,
        nat_outgoing_address="198.18.0.1",
        nat_port_range=(32768, 65535),
        nat_outgoing_iface="eth0",
    )
    ep = WorkloadEndpoint(
        "tap1",
        None,
        ("198.19.0.1/32",),
        ("2001:db8:1::1/128",),
        (),
        (),
        ipv4_nats=(NatMapping("198.19.0.1", "198.18.7.1"), NatMapping("198.19.0.1", "198.18.7.2")),
        ipv6_nats=(NatMapping("2001:db8:1::1", "2001:db8:7::1"),),
    )

    def render(v: int) -> list[Chain]:
        return [
            *nat.static_nat_chains(cfg, v),
            *nat.floating_ip_chains(cfg, [ep], v),
            nat.nat_outgoing_chain(cfg, v, active=True),
        ]

    golden("nat", both_families("nat", render, static.hooks(cfg, "nat")))
