"""Endpoint, dispatch and static chain semantics (layout details live in golden files)."""

from __future__ import annotations

import hashlib
import itertools

from calico.calc.messages import (
    Action,
    HostEndpoint,
    PolicyID,
    TierInfo,
    WorkloadEndpoint,
)
from calico.rules import dispatch, endpoints, naming, packet_walk, static
from calico.rules.config import ProtoPort, RulesConfig
from calico.rules.model import (
    ACCEPT,
    ANY,
    DROP,
    RETURN,
    Chain,
    Goto,
    Hook,
    Jump,
    NoTrack,
    Rule,
    Verdict,
    set_mark,
)

CFG = RulesConfig()
P1, P2 = PolicyID("t1", "t1.a"), PolicyID("t2", "t2.b")


def wep(
    iface: str = "cali1", tiers: tuple[TierInfo, ...] = (), profiles: tuple[str, ...] = ()
) -> WorkloadEndpoint:
    return WorkloadEndpoint(iface, None, (), (), profiles, tiers)


def jumps(chain: Chain) -> list[str]:
    return [r.action.chain for r in chain.rules if isinstance(r.action, Jump)]


def test_endpoint_without_tiers_or_profiles_denies_everything_new() -> None:
    to_wl, from_wl = endpoints.workload_endpoint_chains(CFG, wep())
    for chain in (to_wl, from_wl):
        assert chain.rules[-1].action == DROP
        assert not jumps(chain)
    assert (to_wl.name, from_wl.name) == ("cali-tw-cali1", "cali-fw-cali1")


def test_tiers_apply_only_in_directions_with_policies() -> None:
    ep = wep(tiers=(TierInfo("t1", ingress_policies=(P1,)), TierInfo("t2", egress_policies=(P2,))))
    to_wl, from_wl = endpoints.workload_endpoint_chains(CFG, ep)
    assert jumps(to_wl) == [naming.policy_chain_name(P1, inbound=True)]
    assert jumps(from_wl) == [naming.policy_chain_name(P2, inbound=False)]


def test_pass_default_action_omits_end_of_tier_deny() -> None:
    deny_tier = TierInfo("t1", ingress_policies=(P1,))
    pass_tier = TierInfo("t1", default_action=Action.PASS, ingress_policies=(P1,))
    to_deny, _ = endpoints.workload_endpoint_chains(CFG, wep(tiers=(deny_tier,)))
    to_pass, _ = endpoints.workload_endpoint_chains(CFG, wep(tiers=(pass_tier,)))
    assert len(to_deny.rules) == len(to_pass.rules) + 1
    assert any("End of tier t1" in c for r in to_deny.rules for c in r.comment)
    assert not any("End of tier" in c for r in to_pass.rules for c in r.comment)


def test_profiles_follow_tiers_in_order() -> None:
    ep = wep(tiers=(TierInfo("t1", ingress_policies=(P1, P2)),), profiles=("a", "b"))
    to_wl, _ = endpoints.workload_endpoint_chains(CFG, ep)
    assert jumps(to_wl) == [
        naming.policy_chain_name(P1, inbound=True),
        naming.policy_chain_name(P2, inbound=True),
        "cali-pri-a",
        "cali-pri-b",
    ]


def test_return_allow_action_marks_established_traffic() -> None:
    cfg = RulesConfig(filter_allow_action="RETURN")
    to_wl, _ = endpoints.workload_endpoint_chains(cfg, wep())
    assert to_wl.rules[0].spec().endswith("-j MARK --set-xmark 0x10000/0x10000")
    assert to_wl.rules[1].action == RETURN


def test_encap_from_workloads_can_be_allowed() -> None:
    cfg = RulesConfig(allow_vxlan_from_workloads=True, allow_ipip_from_workloads=True)
    assert (
        len(endpoints.workload_endpoint_chains(CFG, wep())[1].rules)
        == len(endpoints.workload_endpoint_chains(cfg, wep())[1].rules) + 2
    )


def test_host_endpoint_chains_have_failsafes_and_forward_defaults() -> None:
    hep = HostEndpoint("eth0", (), (), (), ())
    th, fh, thfw, fhfw = endpoints.host_endpoint_filter_chains(CFG, "eth0", hep)
    assert jumps(th) == [naming.CHAIN_FAILSAFE_OUT] and jumps(fh) == [naming.CHAIN_FAILSAFE_IN]
    assert th.rules[-1].action == DROP  # named HEP with nothing applicable: default deny
    assert fhfw.rules[-1].action == RETURN  # forwarded traffic allowed when no policy applies
    assert thfw.name == "cali-thfw-eth0"


def test_untracked_chain_notracks_accepted_packets() -> None:
    hep = HostEndpoint(
        "eth0", (), (), (), (), untracked_tiers=(TierInfo("t1", ingress_policies=(P1,)),)
    )
    _, fh = endpoints.host_endpoint_raw_chains(CFG, "eth0", hep)
    assert any(isinstance(r.action, NoTrack) for r in fh.rules)
    assert not any(r.action == DROP for r in fh.rules)  # no end-of-tier deny before filter


def test_dispatch_is_order_independent_and_drops_unknown() -> None:
    a = dispatch.workload_dispatch_chains(CFG, ["calib", "calia", "calia"])
    b = dispatch.workload_dispatch_chains(CFG, ["calia", "calib"])
    assert a == b
    root = next(c for c in a if c.name == naming.CHAIN_FROM_WL_DISPATCH)
    assert root.rules[-1].action == DROP and root.rules[-1].comment == ("Unknown interface",)
    empty = dispatch.workload_dispatch_chains(CFG, [])
    assert [len(c.rules) for c in empty] == [1, 1]


def test_dispatch_tree_keeps_chains_short_at_1000_endpoints() -> None:
    sequential = [f"cali{n:011x}" for n in range(1000)]
    hashed = [f"cali{hashlib.sha1(str(n).encode()).hexdigest()[:11]}" for n in range(1000)]
    for names in (sequential, hashed):
        chains = dispatch.workload_dispatch_chains(CFG, names)
        assert max(len(c.rules) for c in chains) <= 18
        assert all(len(c.name) <= naming.MAX_CHAIN_NAME for c in chains)
    names = hashed
    targets = {
        r.action.chain
        for c in chains
        for r in c.rules
        if isinstance(r.action, Goto) and r.action.chain.startswith("cali-fw-")
    }
    assert len(targets) == 1000


def test_host_dispatch_wildcard_is_the_default() -> None:
    chains = {c.name: c for c in dispatch.host_filter_dispatch_chains(["eth0", "*"])}
    from_hep = chains[naming.CHAIN_FROM_HOST_ENDPOINT]
    assert [r.action for r in from_hep.rules] == [
        Goto("cali-fh-eth0"),
        Goto("cali-fh-any-interface-at-all"),
    ]
    named_only = {c.name: c for c in dispatch.host_filter_dispatch_chains(["eth0"])}
    assert len(named_only[naming.CHAIN_TO_HOST_ENDPOINT].rules) == 1  # no default: falls through


def test_hooks_and_forward_append_rules() -> None:
    filter_hooks = {h.chain: h for h in static.hooks(CFG, "filter")}
    assert set(filter_hooks) == {"INPUT", "FORWARD", "OUTPUT"}
    assert filter_hooks["FORWARD"].insert[0].action == Jump(naming.CHAIN_FORWARD)
    assert filter_hooks["FORWARD"].append[0].action == ACCEPT
    assert {h.chain for h in static.hooks(CFG, "raw")} == {"PREROUTING", "OUTPUT"}
    assert {h.chain for h in static.hooks(CFG, "mangle")} == {"PREROUTING", "POSTROUTING"}


def test_endpoint_to_host_action_ends_wl_to_host() -> None:
    for action in ("DROP", "ACCEPT", "RETURN"):
        cfg = RulesConfig(endpoint_to_host_action=action)
        chains = {c.name: c for c in static.static_filter_chains(cfg, 4)}
        wl_to_host = chains[naming.CHAIN_WL_TO_HOST]
        assert wl_to_host.rules[-2].action == Jump(naming.CHAIN_FROM_WL_DISPATCH)
        assert wl_to_host.rules[-1].action == Verdict(action)


def test_icmpv6_router_traffic_is_allowed_from_workloads_on_v6_only() -> None:
    v4 = {c.name: c for c in static.static_filter_chains(CFG, 4)}[naming.CHAIN_WL_TO_HOST]
    v6 = {c.name: c for c in static.static_filter_chains(CFG, 6)}[naming.CHAIN_WL_TO_HOST]
    assert len(v6.rules) - len(v4.rules) == 6
    assert "--icmpv6-type 135" in v6.rules[4].spec()


def test_failsafes_filter_by_family() -> None:
    cfg = RulesConfig(
        failsafe_inbound=(ProtoPort("tcp", 22, "198.18.0.0/16"), ProtoPort("tcp", 23)),
        failsafe_outbound=(),
    )
    v4 = static.failsafe_chain(cfg, 4, inbound=True, table="filter")
    v6 = static.failsafe_chain(cfg, 6, inbound=True, table="filter")
    assert [r.spec() for r in v4.rules] == [
        "-p tcp -m multiport --dports 22 -s 198.18.0.0/16 -j ACCEPT",
        "-p tcp -m multiport --dports 23 -j ACCEPT",
    ]
    assert len(v6.rules) == 1


def test_rpf_skip_lists_each_workloads_spoofable_prefixes_per_family() -> None:
    ep = WorkloadEndpoint(
        "cali9",
        None,
        (),
        (),
        (),
        (),
        allow_spoofed_source_prefixes=("198.19.0.0/16", "2001:db8::/64"),
    )
    v4 = static.rpf_skip_chain([ep], 4)
    assert [r.spec() for r in v4.rules] == ["-i cali9 -s 198.19.0.0/16 -j ACCEPT"]
    assert len(static.rpf_skip_chain([ep], 6).rules) == 1
    assert static.rpf_skip_chain([], 4).rules == ()


def test_endpoints_with_the_same_policies_share_their_rules() -> None:
    tiers = (TierInfo("t1", ingress_policies=(P1,)),)
    a = endpoints.workload_endpoint_chains(CFG, wep("calia", tiers, ("p",)))
    b = endpoints.workload_endpoint_chains(CFG, wep("calib", tiers, ("p",)))
    c = endpoints.workload_endpoint_chains(CFG, wep("calic", tiers, ("q",)))
    assert [x.rules is y.rules for x, y in zip(a, b, strict=True)] == [True, True]
    assert a[0].name != b[0].name and a[0].rule_hashes() != b[0].rule_hashes()  # name-seeded
    assert a[0].rules != c[0].rules


# -- policy groups ----------------------------------------------------------------------------

S, T = "s:same", "s:other"


def test_policy_runs_group_a_shared_selection_only_where_it_sits_together() -> None:
    a, b, c, d = (PolicyID("t", n) for n in "abcd")
    assert endpoints.policy_runs((a, b, c), (S, S, T)) == [((a, b), S), ((c,), None)]
    # split by another selection's policy: every policy alone (another endpoint may lack c)
    assert endpoints.policy_runs((a, c, b), (S, T, S)) == [((a,), None), ((c,), None), ((b,), None)]
    assert endpoints.policy_runs((a, b), (S, T)) == [((a,), None), ((b,), None)]  # no pairs
    assert endpoints.policy_runs((a, b, d), ()) == [((a,), None), ((b,), None), ((d,), None)]


def test_a_group_chain_is_named_by_tier_and_selection_not_by_its_policies() -> None:
    a, b, c = (PolicyID("t", n) for n in "abc")
    two = wep(tiers=(TierInfo("t", ingress_policies=(a, b), ingress_selections=(S, S)),))
    three = wep(tiers=(TierInfo("t", ingress_policies=(a, b, c), ingress_selections=(S,) * 3),))
    to2, from2, group2 = endpoints.workload_endpoint_chains(CFG, two)
    to3, _, group3 = endpoints.workload_endpoint_chains(CFG, three)
    name = naming.policy_group_chain_name("t", S, inbound=True)
    assert group2.name == group3.name == name and endpoints.is_policy_group(name)
    assert to2 == to3  # a third policy of the selection: only the group chain changes
    assert jumps(to2) == [name]
    assert jumps(group3) == [naming.policy_chain_name(p, inbound=True) for p in (a, b, c)]
    assert not jumps(from2)
    assert len(name) <= naming.MAX_CHAIN_NAME
    # an endpoint administratively down drops everything: it jumps to no group
    assert [c.name for c in endpoints.workload_endpoint_chains(CFG, two, admin_up=False)] == [
        to2.name,
        from2.name,
    ]


def _verdict(chains: list[Chain], behaviour: dict[str, str]) -> str:
    """What the to-workload chain decides, each policy chain acting as `behaviour` says."""
    acts = {
        "accept": (Rule(action=set_mark(CFG.mark_accept)), Rule(action=RETURN)),
        "pass": (Rule(action=set_mark(CFG.mark_pass)), Rule(action=RETURN)),
        "deny": (Rule(action=DROP),),
        "none": (),
    }
    table = {c.name: c for c in chains}
    for name, act in behaviour.items():
        table[name] = Chain(name, acts[act])
    hook = Hook("FORWARD", insert=(
        Rule(action=Jump(chains[0].name)),
        Rule(ANY.mark_set(CFG.mark_accept), ACCEPT),
        Rule(action=DROP),
    ))  # fmt: skip
    tables = packet_walk.Tables({"filter": table}, {"filter": {"FORWARD": hook}}, {})
    pkt = packet_walk.Packet(4, "198.19.0.1", "198.19.0.2", 6, out_iface="cali1")
    return packet_walk.walk(tables, pkt, (("filter", "FORWARD"),)).verdict


def test_grouped_chains_decide_as_the_policies_jumped_to_one_by_one() -> None:
    """Every combination of what four policies in two tiers do (accept, pass, deny, no
    verdict), with the first tier's selections shared, split, or absent (inline)."""
    a, b, c = (PolicyID("t1", n) for n in "abc")
    d = PolicyID("t2", "d")
    layouts = [(S, S, T), (S, S, S), (T, S, S), (S, T, S)]
    for acts in itertools.product(("accept", "pass", "deny", "none"), repeat=4):
        behaviour = {
            naming.policy_chain_name(p, inbound=True): act
            for p, act in zip((a, b, c, d), acts, strict=True)
        }
        inline = wep(tiers=(
            TierInfo("t1", ingress_policies=(a, b, c)), TierInfo("t2", ingress_policies=(d,)),
        ))  # fmt: skip
        expected = _verdict(endpoints.workload_endpoint_chains(CFG, inline), behaviour)
        for layout in layouts:
            grouped = wep(tiers=(
                TierInfo("t1", ingress_policies=(a, b, c), ingress_selections=layout),
                TierInfo("t2", ingress_policies=(d,), ingress_selections=(S,)),
            ))  # fmt: skip
            chains = endpoints.workload_endpoint_chains(CFG, grouped)
            assert _verdict(chains, behaviour) == expected, (acts, layout)


def test_endpoint_chains_are_one_object_while_name_and_rules_are_the_same() -> None:
    """So that their rule hashes and targets are computed once (Chain caches them)."""
    first, _ = endpoints.workload_endpoint_chains(CFG, wep("cali1", profiles=("p",)))
    again, _ = endpoints.workload_endpoint_chains(CFG, wep("cali1", profiles=("p",)))
    assert again is first
    other, _ = endpoints.workload_endpoint_chains(CFG, wep("cali2", profiles=("p",)))
    assert other.rules is first.rules and other.name != first.name
    assert other.rule_hashes() != first.rule_hashes()  # the name is hashed in
    changed, _ = endpoints.workload_endpoint_chains(CFG, wep("cali1", profiles=("q",)))
    assert changed.name == first.name and changed.rules != first.rules
    assert changed.rule_hashes() != first.rule_hashes()
    assert changed.targets() == {"cali-pri-q"} and first.targets() == {"cali-pri-p"}
    first.targets().clear()  # a copy: the cached targets stay
    assert first.targets() == {"cali-pri-p"}
