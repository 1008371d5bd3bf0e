"""One host's tables for the policy trace, rendered as Felix renders them (pure).

Inputs: the messages the calculation graph sent that host's Felix, folded into a
`HostState`; its rule settings; every policy in evaluation order (`Considered`). Output:
`HostTables`: the raw, mangle, nat and filter chains, hooks and IP sets the dataplane
managers would program (the same `calico.rules` functions), plus what the explanation needs: which
chain is which endpoint's, and which Calico rule each iptables rule of a policy or profile
chain came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from calico.calc.messages import (
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileRemove,
    ActiveProfileUpdate,
    HostEndpoint,
    HostEndpointID,
    HostEndpointRemove,
    HostEndpointUpdate,
    IPAMPool,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    IPSetDeltaUpdate,
    IPSetRemove,
    IPSetType,
    IPSetUpdate,
    Message,
    ParsedPolicy,
    ParsedProfile,
    ParsedRule,
    PolicyID,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calc.policy_resolver import HostTiers
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.dispatch import workload_dispatch_chains
from calico.rules.endpoints import host_endpoint_chains, workload_endpoint_chains
from calico.rules.model import Chain
from calico.rules.nat import (
    floating_ip_chains,
    nat_outgoing_active,
    nat_outgoing_chain,
    pool_sets,
    static_nat_chains,
)
from calico.rules.packet_walk import IPSet, Tables
from calico.rules.policy import policy_chains, policy_table, profile_chains, rule_to_rules
from calico.rules.static import hooks, static_filter_chains, static_mangle_chains, static_raw_chains


@dataclass(slots=True)
class HostState:
    """What one host's Felix was told, folded from the messages in order."""

    ipsets: dict[str, tuple[IPSetType, set[str]]] = field(default_factory=dict)
    policies: dict[PolicyID, ParsedPolicy] = field(default_factory=dict)
    profiles: dict[str, ParsedProfile] = field(default_factory=dict)
    workloads: dict[WorkloadEndpointID, WorkloadEndpoint] = field(default_factory=dict)
    host_endpoints: dict[HostEndpointID, HostEndpoint] = field(default_factory=dict)
    pools: dict[str, IPAMPool] = field(default_factory=dict)

    def on_messages(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            match msg:
                case IPSetUpdate(id=set_id, type=set_type, members=members):
                    self.ipsets[set_id] = (set_type, set(members))
                case IPSetDeltaUpdate(id=set_id, added=added, removed=removed):
                    self.ipsets[set_id][1].difference_update(removed)
                    self.ipsets[set_id][1].update(added)
                case IPSetRemove(id=set_id):
                    self.ipsets.pop(set_id, None)
                case ActivePolicyUpdate(id=pid, policy=policy):
                    self.policies[pid] = policy
                case ActivePolicyRemove(id=pid):
                    self.policies.pop(pid, None)
                case ActiveProfileUpdate(id=pid, profile=profile):
                    self.profiles[pid] = profile
                case ActiveProfileRemove(id=pid):
                    self.profiles.pop(pid, None)
                case WorkloadEndpointUpdate(id=eid, endpoint=ep):
                    self.workloads[eid] = ep
                case WorkloadEndpointRemove(id=eid):
                    self.workloads.pop(eid, None)
                case HostEndpointUpdate(id=hid, endpoint=hep):
                    self.host_endpoints[hid] = hep
                case HostEndpointRemove(id=hid):
                    self.host_endpoints.pop(hid, None)
                case IPAMPoolUpdate(id=pool_id, pool=pool):
                    self.pools[pool_id] = pool
                case IPAMPoolRemove(id=pool_id):
                    self.pools.pop(pool_id, None)


_NO_HOST_TIERS = HostTiers((), (), (), ())


@dataclass(frozen=True, slots=True)
class Considered:
    """Every policy in the datastore, in evaluation order, as if each selected the endpoint
    (the calc's own ordering): the policies a trace lists as not selecting it."""

    workload: tuple[TierInfo, ...] = ()
    host: HostTiers = _NO_HOST_TIERS


@dataclass(frozen=True, slots=True)
class EndpointChain:
    label: str
    inbound: bool
    tiers: tuple[TierInfo, ...]
    profile_ids: tuple[str, ...]
    considered: tuple[TierInfo, ...] = ()


@dataclass(slots=True)
class HostTables:
    """One host's rendered tables for one IP family, plus what the explanation needs."""

    tables: Tables
    endpoint_chains: dict[tuple[str, str], EndpointChain]
    owners: dict[str, tuple[str, tuple[int, ...]]]  # policy/profile chain -> name, rule idx


def render(
    cfg: RulesConfig, state: HostState, ip_version: int, considered: Considered
) -> HostTables:
    """Every chain of raw, mangle, nat and filter as the dataplane managers render them."""
    every_pool, masq_pools = pool_sets(state.pools.values())
    chains: dict[str, list[Chain]] = {
        "filter": static_filter_chains(cfg, ip_version),
        "raw": static_raw_chains(cfg, ip_version, state.workloads.values()),
        "mangle": static_mangle_chains(cfg, ip_version),
        "nat": [
            *static_nat_chains(cfg, ip_version),
            *floating_ip_chains(cfg, state.workloads.values(), ip_version),
            nat_outgoing_chain(cfg, ip_version, nat_outgoing_active(masq_pools, ip_version)),
        ],
    }
    ep_chains: dict[tuple[str, str], EndpointChain] = {}
    for eid, wep in sorted(state.workloads.items(), key=lambda i: (i[0].namespace, i[0].name)):
        chains["filter"] += workload_endpoint_chains(cfg, wep)
        label = f"workload {eid.namespace}/{eid.name}"
        for pfx, inbound in ((naming.WORKLOAD_TO_PFX, True), (naming.WORKLOAD_FROM_PFX, False)):
            name = naming.endpoint_chain_name(pfx, wep.interface_name)
            ep_chains["filter", name] = EndpointChain(
                label, inbound, wep.tiers, wep.profile_ids, considered.workload
            )
    ifaces = [w.interface_name for w in state.workloads.values()]
    chains["filter"] += workload_dispatch_chains(cfg, ifaces)
    heps = _resolved_host_endpoints(state)
    filt, raw, mangle = host_endpoint_chains(cfg, {i: h for i, (_, h) in heps.items()})
    chains["filter"] += filt
    chains["raw"] += raw
    chains["mangle"] += mangle
    for iface, (hid, hep) in heps.items():
        label = f"host endpoint {hid.name}"
        ep_chains.update(_host_endpoint_chains(iface, label, hep, considered.host))
    owners: dict[str, tuple[str, tuple[int, ...]]] = {}
    for pid, policy in state.policies.items():
        chains[policy_table(policy)] += policy_chains(cfg, pid, policy, ip_version)
        for inbound, rules in ((True, policy.inbound_rules), (False, policy.outbound_rules)):
            owner = _rule_owners(cfg, rules, ip_version)
            owners[naming.policy_chain_name(pid, inbound=inbound)] = (policy_name(pid), owner)
    for prof_id, profile in state.profiles.items():
        chains["filter"] += profile_chains(cfg, prof_id, profile, ip_version)
        for inbound, rules in ((True, profile.inbound_rules), (False, profile.outbound_rules)):
            owner = _rule_owners(cfg, rules, ip_version)
            owners[naming.profile_chain_name(prof_id, inbound=inbound)] = (prof_id, owner)
    ipsets = {
        naming.ipset_name(ip_version, set_id): IPSet(set_type, frozenset(members))
        for set_id, (set_type, members) in state.ipsets.items()
    }
    for set_id, members in (
        (naming.IPSET_ID_ALL_POOLS, every_pool),
        (naming.IPSET_ID_MASQ_POOLS, masq_pools),
    ):  # the NAT manager's, from the pools (not the calculation's IP sets)
        ipsets[naming.ipset_name(ip_version, set_id)] = IPSet(IPSetType.NET, frozenset(members))
    tables = Tables(
        {table: {c.name: c for c in cs} for table, cs in chains.items()},
        {table: {h.chain: h for h in hooks(cfg, table)} for table in chains},
        ipsets,
    )
    return HostTables(tables, ep_chains, owners)


def _resolved_host_endpoints(state: HostState) -> dict[str, tuple[HostEndpointID, HostEndpoint]]:
    """Interface -> host endpoint, first by name wins (as the endpoint manager resolves).
    Endpoints with only expected IPs resolve against live interfaces: not traced."""
    owners: dict[str, tuple[HostEndpointID, HostEndpoint]] = {}
    for hid in sorted(state.host_endpoints, key=lambda h: h.name):
        hep = state.host_endpoints[hid]
        if hep.interface_name and hep.interface_name not in owners:
            owners[hep.interface_name] = (hid, hep)
    return owners


def _host_endpoint_chains(
    iface: str, label: str, hep: HostEndpoint, all_tiers: HostTiers
) -> Iterator[tuple[tuple[str, str], EndpointChain]]:
    """The chains the endpoint manager renders for a host endpoint, with what they check."""
    to_pfx, from_pfx = naming.HOST_TO_PFX, naming.HOST_FROM_PFX
    fwd_to, fwd_from = naming.HOST_TO_FORWARD_PFX, naming.HOST_FROM_FORWARD_PFX
    normal = (hep.tiers, hep.profile_ids, all_tiers.normal)
    groups = (
        ("filter", to_pfx, False, normal),
        ("filter", from_pfx, True, normal),
        ("filter", fwd_to, False, (hep.forward_tiers, (), all_tiers.forward)),
        ("filter", fwd_from, True, (hep.forward_tiers, (), all_tiers.forward)),
        ("raw", to_pfx, False, (hep.untracked_tiers, (), all_tiers.untracked)),
        ("raw", from_pfx, True, (hep.untracked_tiers, (), all_tiers.untracked)),
        ("mangle", from_pfx, True, (hep.pre_dnat_tiers, (), all_tiers.pre_dnat)),
        ("mangle", to_pfx, False, normal),
    )
    for table, pfx, inbound, (tiers, profiles, considered) in groups:
        chain = naming.endpoint_chain_name(pfx, iface)
        yield (table, chain), EndpointChain(label, inbound, tiers, profiles, considered)


def _rule_owners(
    cfg: RulesConfig, rules: tuple[ParsedRule, ...], ip_version: int
) -> tuple[int, ...]:
    """For each iptables rule of the chain, the index of the Calico rule it came from."""
    return tuple(
        index
        for index, rule in enumerate(rules)
        for _ in rule_to_rules(cfg, rule, ip_version, cfg.log_prefix)
    )


def policy_name(pid: PolicyID) -> str:
    return f"{pid.namespace}/{pid.name}" if pid.namespace else pid.name
