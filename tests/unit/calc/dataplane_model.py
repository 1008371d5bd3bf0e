"""A model dataplane for calculation tests: applies messages and checks their ordering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from calico.calc import messages as m


@dataclass
class ModelDataplane:
    ipsets: dict[str, set[str]] = field(default_factory=dict)
    policies: dict[m.PolicyID, m.ParsedPolicy] = field(default_factory=dict)
    profiles: dict[str, m.ParsedProfile] = field(default_factory=dict)
    weps: dict[m.WorkloadEndpointID, m.WorkloadEndpoint] = field(default_factory=dict)
    heps: dict[m.HostEndpointID, m.HostEndpoint] = field(default_factory=dict)
    pools: dict[str, m.IPAMPool] = field(default_factory=dict)
    vteps: dict[tuple[str, int], m.VTEPUpdate] = field(default_factory=dict)
    routes: dict[str, m.RouteUpdate] = field(default_factory=dict)
    in_sync: bool = False
    batches: list[list[m.Message]] = field(default_factory=list)

    def __call__(self, batch: Sequence[m.Message]) -> None:
        self.batches.append(list(batch))
        for msg in batch:
            self.apply(msg)
        self.check_references()

    def apply(self, msg: m.Message) -> None:
        if isinstance(msg, m.IPSetUpdate):
            assert msg.id not in self.ipsets, f"full update for existing set {msg.id}"
            self.ipsets[msg.id] = set(msg.members)
        elif isinstance(msg, m.IPSetDeltaUpdate):
            members = self.ipsets[msg.id]
            assert not (msg.added & members), "delta adds present members"
            assert msg.removed <= members, "delta removes absent members"
            members |= msg.added
            members -= msg.removed
        elif isinstance(msg, m.IPSetRemove):
            del self.ipsets[msg.id]
        elif isinstance(msg, m.ActivePolicyUpdate):
            self.policies[msg.id] = msg.policy
        elif isinstance(msg, m.ActivePolicyRemove):
            del self.policies[msg.id]
        elif isinstance(msg, m.ActiveProfileUpdate):
            self.profiles[msg.id] = msg.profile
        elif isinstance(msg, m.ActiveProfileRemove):
            del self.profiles[msg.id]
        elif isinstance(msg, m.WorkloadEndpointUpdate):
            self.weps[msg.id] = msg.endpoint
        elif isinstance(msg, m.WorkloadEndpointRemove):
            del self.weps[msg.id]
        elif isinstance(msg, m.HostEndpointUpdate):
            self.heps[msg.id] = msg.endpoint
        elif isinstance(msg, m.HostEndpointRemove):
            del self.heps[msg.id]
        elif isinstance(msg, m.IPAMPoolUpdate):
            assert self.pools.get(msg.id) != msg.pool, f"pool {msg.id} sent unchanged"
            self.pools[msg.id] = msg.pool
        elif isinstance(msg, m.IPAMPoolRemove):
            del self.pools[msg.id]
        elif isinstance(msg, m.VTEPUpdate):
            assert self.vteps.get((msg.node, msg.ip_version)) != msg, "VTEP sent unchanged"
            self.vteps[(msg.node, msg.ip_version)] = msg
        elif isinstance(msg, m.VTEPRemove):
            del self.vteps[(msg.node, msg.ip_version)]
        elif isinstance(msg, m.RouteUpdate):
            assert self.routes.get(msg.dst) != msg, f"route {msg.dst} sent unchanged"
            self.routes[msg.dst] = msg
        elif isinstance(msg, m.RouteRemove):
            del self.routes[msg.dst]
        elif isinstance(msg, m.InSync):
            self.in_sync = True
        self.check_tunnels()

    def check_tunnels(self) -> None:
        """After every message: a VXLAN route goes through a VTEP the dataplane has."""
        for route in self.routes.values():
            if route.type is m.RouteType.VXLAN:
                version = 6 if ":" in route.dst else 4
                vtep = self.vteps.get((route.node, version))
                assert vtep is not None, f"route {route.dst} without the VTEP of {route.node}"
                assert vtep.tunnel_addr == route.next_hop, f"route {route.dst} via a stale VTEP"

    def check_references(self) -> None:
        """Everything referenced exists: rules' IP sets, endpoints' policies and profiles."""
        rules = [r for p in self.policies.values() for r in (*p.inbound_rules, *p.outbound_rules)]
        rules += [r for p in self.profiles.values() for r in (*p.inbound_rules, *p.outbound_rules)]
        for rule in rules:
            for ids in (
                rule.src_ipset_ids, rule.not_src_ipset_ids, rule.dst_ipset_ids,
                rule.not_dst_ipset_ids, rule.src_named_port_ipset_ids,
                rule.dst_named_port_ipset_ids, rule.not_src_named_port_ipset_ids,
                rule.not_dst_named_port_ipset_ids,
            ):  # fmt: skip
                for set_id in ids:
                    assert set_id in self.ipsets, f"rule uses missing set {set_id}"
        endpoints: list[m.WorkloadEndpoint | m.HostEndpoint] = [
            *self.weps.values(),
            *self.heps.values(),
        ]
        for ep in endpoints:
            for tier in ep.tiers:
                for pid in (*tier.ingress_policies, *tier.egress_policies):
                    assert pid in self.policies, f"endpoint uses missing policy {pid}"
            for name in ep.profile_ids:
                assert name in self.profiles, f"endpoint uses missing profile {name}"

    def used_sets(self) -> set[str]:
        rules = [r for p in self.policies.values() for r in (*p.inbound_rules, *p.outbound_rules)]
        rules += [r for p in self.profiles.values() for r in (*p.inbound_rules, *p.outbound_rules)]
        used: set[str] = set()
        for r in rules:
            used.update(r.src_ipset_ids, r.not_src_ipset_ids, r.dst_ipset_ids, r.not_dst_ipset_ids)
            used.update(r.src_named_port_ipset_ids, r.dst_named_port_ipset_ids)
            used.update(r.not_src_named_port_ipset_ids, r.not_dst_named_port_ipset_ids)
        return used
