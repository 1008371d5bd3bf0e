"""Per-endpoint chains: workload `cali-tw-`/`cali-fw-`, host `cali-th-`/`cali-fh-` and the
forward (`cali-thfw-`/`cali-fhfw-`), untracked (raw) and pre-DNAT (mangle) variants.

Inputs: an endpoint message (its tiers with ordered policy IDs, its profile IDs). Output:
chains that are the same for IPv4 and IPv6 (nothing in them is family-specific), so the
caller installs them in both families' tables.

Layout (felix/rules/endpoints.go), for a normal chain: [admin down: deny everything];
conntrack RELATED,ESTABLISHED -> allow, INVALID -> deny; [host endpoints: jump failsafe];
clear the accept and pass marks; [from workloads: deny IPIP and VXLAN]; then per tier that
has policies for this direction: clear pass ("Start of tier"), for each policy "if pass
clear, jump cali-pi-/po-", "RETURN if accept set"; end of tier: deny if pass still clear
(unless the tier's default action is Pass). Then per profile: jump cali-pri-/pro-, RETURN if
accept; finally deny ("no profiles matched"). A chain therefore fails closed: no tiers and no
profiles deny everything. Allowed packets RETURN with the accept mark set and the caller
(cali-FORWARD, cali-INPUT...) accepts on that mark.

Policy groups (workload endpoints): the policies of a tier that share a selector (so apply
to the same endpoints) and sit side by side are jumped to through one shared chain,
`cali-gi-`/`cali-go-` + a hash of the tier and the selector, which holds their jumps and
returns. Adding or removing such a policy then rewrites that one chain instead of the chain
of every endpoint it selects, which under policy churn was half of what Felix wrote
(bench/churn_rate.py). The semantics are the endpoint chain's own: the group returns on
accept, skips the rest once a policy passed, and the endpoint chain returns if accepted.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from calico.calc.messages import Action as PolicyAction
from calico.calc.messages import HostEndpoint, PolicyID, PortRange, TierInfo, WorkloadEndpoint
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.dispatch import (
    host_filter_dispatch_chains,
    host_mangle_dispatch_chains,
    host_raw_dispatch_chains,
)
from calico.rules.model import (
    ACCEPT,
    ANY,
    RETURN,
    Action,
    Chain,
    Jump,
    NoTrack,
    Rule,
    clear_mark,
    set_mark,
    verdict,
)

PROTO_IPIP = 4
FAILSAFE_IN = naming.CHAIN_FAILSAFE_IN
FAILSAFE_OUT = naming.CHAIN_FAILSAFE_OUT


@dataclass(frozen=True, slots=True)
class _Kind:
    """How a chain type differs: filter (normal/forward), raw (untracked), mangle (pre-DNAT)."""

    conntrack: bool
    end_of_tier_deny: bool
    profiles: bool
    notrack_on_accept: bool = False
    allow_if_no_policy: bool = False


NORMAL = _Kind(conntrack=True, end_of_tier_deny=True, profiles=True)
FORWARD = _Kind(conntrack=True, end_of_tier_deny=True, profiles=False, allow_if_no_policy=True)
UNTRACKED = _Kind(conntrack=False, end_of_tier_deny=False, profiles=False, notrack_on_accept=True)
PRE_DNAT = _Kind(conntrack=True, end_of_tier_deny=False, profiles=False)


@dataclass(frozen=True, slots=True)
class _Spec:
    """Everything an endpoint chain's rules depend on, its name and tiers aside (the tiers
    are given apart: what they jump to keys `_endpoint_rules`' cache)."""

    inbound: bool  # which policy direction applies: ingress (cali-pi-) or egress (cali-po-)
    kind: _Kind
    profile_ids: tuple[str, ...] = ()
    failsafe: str | None = None
    allow: Action = ACCEPT
    drop_encap: bool = False


def workload_endpoint_chains(
    cfg: RulesConfig, ep: WorkloadEndpoint, *, admin_up: bool = True
) -> list[Chain]:
    """`cali-tw-<iface>` (traffic to the workload) and `cali-fw-<iface>` (from it)."""
    to_wl, from_wl = _workload_specs(cfg, ep.profile_ids)
    groups: list[Chain] = []
    iface, tiers = ep.interface_name, ep.tiers
    return [
        _endpoint_chain(cfg, naming.WORKLOAD_TO_PFX, iface, to_wl, tiers, admin_up, groups),
        _endpoint_chain(cfg, naming.WORKLOAD_FROM_PFX, iface, from_wl, tiers, admin_up, groups),
        *groups,
    ]


@functools.lru_cache(maxsize=1024)
def _workload_specs(cfg: RulesConfig, profile_ids: tuple[str, ...]) -> tuple[_Spec, _Spec]:
    """A workload's to and from specs (cached: made for every update of every endpoint)."""
    to_wl = _Spec(
        inbound=True, kind=NORMAL, profile_ids=profile_ids, allow=verdict(cfg.filter_allow_action)
    )
    return to_wl, replace(to_wl, inbound=False, drop_encap=True)


def is_policy_group(chain_name: str) -> bool:
    """A chain of policies shared by endpoints (see `policy_runs`)."""
    return chain_name.startswith(
        (naming.POLICY_GROUP_INBOUND_PFX, naming.POLICY_GROUP_OUTBOUND_PFX)
    )


def host_endpoint_filter_chains(cfg: RulesConfig, iface: str, hep: HostEndpoint) -> list[Chain]:
    """Filter-table chains of a host endpoint: th, fh (with failsafes), thfw, fhfw."""
    to_host = _Spec(
        inbound=False,
        kind=NORMAL,
        profile_ids=hep.profile_ids,
        failsafe=FAILSAFE_OUT,
        allow=verdict(cfg.filter_allow_action),
    )
    from_host = replace(to_host, inbound=True, failsafe=FAILSAFE_IN)
    to_fwd = replace(to_host, kind=FORWARD, profile_ids=(), failsafe=None)
    from_fwd = replace(to_fwd, inbound=True)
    return [
        _endpoint_chain(cfg, naming.HOST_TO_PFX, iface, to_host, hep.tiers),
        _endpoint_chain(cfg, naming.HOST_FROM_PFX, iface, from_host, hep.tiers),
        _endpoint_chain(cfg, naming.HOST_TO_FORWARD_PFX, iface, to_fwd, hep.forward_tiers),
        _endpoint_chain(cfg, naming.HOST_FROM_FORWARD_PFX, iface, from_fwd, hep.forward_tiers),
    ]


def host_endpoint_raw_chains(cfg: RulesConfig, iface: str, hep: HostEndpoint) -> list[Chain]:
    """Raw-table (doNotTrack) chains: th and fh; allowed packets get NOTRACK and ACCEPT."""
    to_host = _Spec(inbound=False, kind=UNTRACKED, failsafe=FAILSAFE_OUT)
    from_host = replace(to_host, inbound=True, failsafe=FAILSAFE_IN)
    return [
        _endpoint_chain(cfg, naming.HOST_TO_PFX, iface, to_host, hep.untracked_tiers),
        _endpoint_chain(cfg, naming.HOST_FROM_PFX, iface, from_host, hep.untracked_tiers),
    ]


def host_endpoint_mangle_chains(cfg: RulesConfig, iface: str, hep: HostEndpoint) -> list[Chain]:
    """Mangle-table chains: fh for pre-DNAT ingress policy, th for host egress after DNAT.

    Mangle allows by RETURN (th) or the mangle allow action (fh) rather than filtering's
    ACCEPT, because other mangle rules may still need to see allowed packets.
    """
    pre_dnat = _Spec(
        inbound=True,
        kind=PRE_DNAT,
        failsafe=FAILSAFE_IN,
        allow=verdict(cfg.mangle_allow_action),
    )
    egress = _Spec(
        inbound=False,
        kind=NORMAL,
        profile_ids=hep.profile_ids,
        failsafe=FAILSAFE_OUT,
        allow=RETURN,
    )
    return [
        _endpoint_chain(cfg, naming.HOST_FROM_PFX, iface, pre_dnat, hep.pre_dnat_tiers),
        _endpoint_chain(cfg, naming.HOST_TO_PFX, iface, egress, hep.tiers),
    ]


def host_endpoint_chains(
    cfg: RulesConfig, heps: Mapping[str, HostEndpoint]
) -> tuple[list[Chain], list[Chain], list[Chain]]:
    """Every host endpoint chain, dispatch included, for (filter, raw, mangle); `heps` maps
    each resolved interface name (or "*") to its endpoint."""
    filt: list[Chain] = [*host_filter_dispatch_chains(heps)]
    untracked = [iface for iface, h in heps.items() if h.untracked_tiers]
    pre_dnat = [iface for iface, h in heps.items() if h.pre_dnat_tiers]
    raw: list[Chain] = [*host_raw_dispatch_chains(cfg, untracked)]
    mangle: list[Chain] = [*host_mangle_dispatch_chains(cfg, pre_dnat, [])]
    for iface, hep in heps.items():
        filt += host_endpoint_filter_chains(cfg, iface, hep)
        if iface in untracked:
            raw += host_endpoint_raw_chains(cfg, iface, hep)
        if iface in pre_dnat:
            mangle += host_endpoint_mangle_chains(cfg, iface, hep)
    return filt, raw, mangle


@dataclass(frozen=True, slots=True)
class _TierJumps:
    """What a tier puts in an endpoint chain of one direction: the chains it jumps to."""

    name: str
    default_action: PolicyAction
    targets: tuple[str, ...]


def _endpoint_chain(
    cfg: RulesConfig,
    prefix: str,
    iface: str,
    spec: _Spec,
    tiers: tuple[TierInfo, ...],
    admin_up: bool = True,
    groups: list[Chain] | None = None,
) -> Chain:
    """The endpoint chain; with `groups`, the shared chains of policies it jumps to (see
    `policy_runs`) are added there, from the same runs its jumps were made of."""
    jumps, grouped = _tier_jumps(tiers, spec.inbound)
    if groups is not None and admin_up:
        groups += (_group_chain(cfg, *run, spec.inbound) for run in grouped)
    rules = _endpoint_rules(cfg, spec, jumps, admin_up)
    # One Chain object per name and tuple of rules (shared by _endpoint_rules' cache): its
    # rule hashes and targets are computed once, not again for every update of the endpoint
    # or every endpoint re-created on the same interface. Keyed by the tuple's identity
    # (hashing the rules would cost about what it saves); the entry holds the tuple, so the
    # identity cannot be reused while it is there.
    key = (prefix, iface, id(rules))
    chain = _CHAINS.get(key)
    if chain is None or chain.rules is not rules:
        if len(_CHAINS) >= _CHAINS_KEPT:
            _CHAINS.clear()
        chain = _CHAINS[key] = Chain(naming.endpoint_chain_name(prefix, iface), rules)
    return chain


_CHAINS_KEPT = 16384  # a bound on the cache below (two chains per workload interface)
_CHAINS: dict[tuple[str, str, int], Chain] = {}


_GroupedRun = tuple[str, tuple[PolicyID, ...], str]  # tier, policies, their selection


def _tier_jumps(
    tiers: tuple[TierInfo, ...], inbound: bool
) -> tuple[tuple[_TierJumps, ...], list[_GroupedRun]]:
    """What each tier jumps to, and the runs of policies among those that are groups.
    Kept apart: the jumps key `_endpoint_rules`' cache, which a change inside a group must
    not miss."""
    out = []
    grouped: list[_GroupedRun] = []
    for tier in tiers:
        policies = tier.ingress_policies if inbound else tier.egress_policies
        if policies:
            runs = policy_runs(policies, _selections(tier, inbound))
            targets = tuple(_run_chain(tier.name, run, sel, inbound) for run, sel in runs)
            out.append(_TierJumps(tier.name, tier.default_action, targets))
            grouped += ((tier.name, run, sel) for run, sel in runs if sel is not None)
    return tuple(out), grouped


@functools.lru_cache(maxsize=65536)
def _run_chain(tier: str, run: tuple[PolicyID, ...], selection: str | None, inbound: bool) -> str:
    """The chain a run of policies is jumped to through (cached: names may be hashed)."""
    if selection is None:
        return naming.policy_chain_name(run[0], inbound=inbound)
    return naming.policy_group_chain_name(tier, selection, inbound=inbound)


@functools.lru_cache(maxsize=2048)
def _endpoint_rules(
    cfg: RulesConfig, spec: _Spec, jumps: tuple[_TierJumps, ...], admin_up: bool
) -> tuple[Rule, ...]:
    """A chain's rules, from `spec` and `jumps` (what its tiers jump to).
    Cached: endpoints with the same policies and profiles (pods of one deployment) share
    one tuple of rules, built once, whose texts are rendered once; and an endpoint whose
    tiers changed only inside a policy group gets the very tuple it had."""
    deny = verdict(cfg.filter_deny_action)
    if not admin_up:
        return (Rule(action=deny, comment=("Endpoint admin disabled",)),)
    rules = _conntrack_rules(cfg, spec) if spec.kind.conntrack else []
    if spec.failsafe:
        rules.append(Rule(action=Jump(spec.failsafe)))
    rules.append(Rule(action=clear_mark(cfg.mark_accept | cfg.mark_pass)))
    if spec.drop_encap:
        rules += _encap_rules(cfg)
    rules += _tier_rules(cfg, spec, jumps)
    if spec.kind.profiles:
        rules += _profile_rules(cfg, spec)
    return tuple(rules)


def _conntrack_rules(cfg: RulesConfig, spec: _Spec) -> list[Rule]:
    established = ANY.ct_state("RELATED,ESTABLISHED")
    rules = []
    if spec.allow != ACCEPT:
        # Returning instead of accepting: flag the packet as allowed for the caller.
        rules.append(Rule(established, set_mark(cfg.mark_accept)))
    rules.append(Rule(established, spec.allow))
    if not cfg.disable_conntrack_invalid:
        rules.append(Rule(ANY.ct_state("INVALID"), verdict(cfg.filter_deny_action)))
    return rules


def _encap_rules(cfg: RulesConfig) -> list[Rule]:
    deny = verdict(cfg.filter_deny_action)
    rules = []
    if not cfg.allow_vxlan_from_workloads:
        vxlan = ANY.protocol("udp").ports("dst", [PortRange(cfg.vxlan_port, cfg.vxlan_port)])
        comment = f"{deny.target} VXLAN encapped packets originating in workloads"
        rules.append(Rule(vxlan, deny, (comment,)))
    if not cfg.allow_ipip_from_workloads:
        comment = f"{deny.target} IPinIP encapped packets originating in workloads"
        rules.append(Rule(ANY.protocol(str(PROTO_IPIP)), deny, (comment,)))
    return rules


def _tier_rules(cfg: RulesConfig, spec: _Spec, jumps: tuple[_TierJumps, ...]) -> list[Rule]:
    deny = verdict(cfg.filter_deny_action)
    accepted = ANY.mark_set(cfg.mark_accept)
    pass_clear = ANY.mark_clear(cfg.mark_pass)
    rules: list[Rule] = []
    for tier in jumps:
        rules.append(
            Rule(action=clear_mark(cfg.mark_pass), comment=(f"Start of tier {tier.name}",))
        )
        for chain in tier.targets:
            rules.append(Rule(pass_clear, Jump(chain)))
            if spec.kind.notrack_on_accept:
                rules.append(Rule(accepted, NoTrack()))
            rules.append(Rule(accepted, RETURN, ("Return if policy accepted",)))
        if spec.kind.end_of_tier_deny and tier.default_action is not PolicyAction.PASS:
            text = f"End of tier {tier.name}. {deny.target.title()} if no policies passed packet"
            rules.append(Rule(pass_clear, deny, (text,)))
    if not rules and spec.kind.allow_if_no_policy:
        rules = [
            Rule(action=set_mark(cfg.mark_accept), comment=("Allow forwarded traffic by default",)),
            Rule(action=RETURN, comment=("Return for accepted forward traffic",)),
        ]
    return rules


MIN_GROUP = 2  # a policy alone in its selection is jumped to directly


def policy_runs(
    policies: Sequence[PolicyID], selections: Sequence[str]
) -> list[tuple[tuple[PolicyID, ...], str | None]]:
    """`policies` (of one tier and direction, in order) in runs: each selection that at
    least MIN_GROUP of them share and that they hold side by side is one run, named by it;
    every other policy is a run of its own (None). Policies with one selection apply to the
    same endpoints, so each of those holds the same run in the same order: one chain of
    them serves all the endpoints that hold it side by side (the others jump to each
    policy, as usual). No `selections` (host endpoints): every policy alone."""
    if not selections:
        return [((p,), None) for p in policies]
    counts = Counter(selections)
    runs: list[tuple[tuple[PolicyID, ...], str | None]] = []
    i = 0
    while i < len(policies):
        selection, n = selections[i], counts[selections[i]]
        if n >= MIN_GROUP and tuple(selections[i : i + n]) == (selection,) * n:
            runs.append((tuple(policies[i : i + n]), selection))
            i += n
        else:
            runs.append(((policies[i],), None))
            i += 1
    return runs


def _selections(tier: TierInfo, inbound: bool) -> tuple[str, ...]:
    return tier.ingress_selections if inbound else tier.egress_selections


@functools.lru_cache(maxsize=4096)
def _group_chain(
    cfg: RulesConfig, tier: str, run: tuple[PolicyID, ...], selection: str, inbound: bool
) -> Chain:
    """A shared chain of policies: per policy, as an endpoint chain has it, jump if no
    policy of the tier passed, return if it accepted (at the end the chain returns anyway).
    Cached: every endpoint jumping to a group gets the same chain object."""
    accepted = ANY.mark_set(cfg.mark_accept)
    pass_clear = ANY.mark_clear(cfg.mark_pass)
    rules: list[Rule] = []
    for policy_id in run:
        if rules:
            rules.append(Rule(accepted, RETURN, ("Return if policy accepted",)))
        rules.append(Rule(pass_clear, Jump(naming.policy_chain_name(policy_id, inbound=inbound))))
    name = naming.policy_group_chain_name(tier, selection, inbound=inbound)
    return Chain(name, tuple(rules))


def _profile_rules(cfg: RulesConfig, spec: _Spec) -> list[Rule]:
    deny = verdict(cfg.filter_deny_action)
    rules: list[Rule] = []
    for profile_id in spec.profile_ids:
        chain = naming.profile_chain_name(profile_id, inbound=spec.inbound)
        rules.append(Rule(action=Jump(chain)))
        rules.append(Rule(ANY.mark_set(cfg.mark_accept), RETURN, ("Return if profile accepted",)))
    rules.append(Rule(action=deny, comment=(f"{deny.target.title()} if no profiles matched",)))
    return rules
