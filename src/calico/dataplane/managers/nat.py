"""Workload NAT mappings and IP pools -> the nat table of every family, and the pool IP sets.

Felix's floating IP and masquerade managers (felix/dataplane/linux/floating_ip_mgr.go,
masq_mgr.go) in one: `cali-fip-dnat`/`cali-fip-snat` from the local endpoints' NAT mappings,
the `all-ipam-pools`/`masq-ipam-pools` IP sets from the IP pools and `cali-nat-outgoing`,
active in a family while one of its pools has natOutgoing. The sets exist (empty if need
be) from the first apply, as Felix creates them at start. (Floating IP routes are the
endpoint manager's: they go with the endpoint's other routes.)

Only endpoints that carry NAT mappings are remembered, and only a change of mappings makes
the chains dirty, so ordinary endpoint churn costs nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from calico.calc.messages import (
    IPAMPool,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    IPSetType,
    Message,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.dataplane.drivers.ipsets import IPSets
from calico.dataplane.managers.policy import ChainTable
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.nat import (
    floating_ip_chains,
    nat_outgoing_active,
    nat_outgoing_chain,
    pool_sets,
)


class NatManager:
    def __init__(
        self, cfg: RulesConfig, tables: Iterable[ChainTable], ipsets: Sequence[IPSets]
    ) -> None:
        self._cfg = cfg
        self._tables = [t for t in tables if t.table == "nat"]
        self._ipsets = list(ipsets)
        self._with_nats: dict[WorkloadEndpointID, WorkloadEndpoint] = {}
        self._pools: dict[str, IPAMPool] = {}
        self._fips_dirty = True
        self._pools_dirty = True

    def on_update(self, msg: Message) -> None:
        match msg:
            case WorkloadEndpointUpdate(id=ep_id, endpoint=ep):
                self._set_endpoint(ep_id, ep if ep.ipv4_nats or ep.ipv6_nats else None)
            case WorkloadEndpointRemove(id=ep_id):
                self._set_endpoint(ep_id, None)
            case IPAMPoolUpdate(id=pool_id, pool=pool):
                self._pools[pool_id] = pool
                self._pools_dirty = True
            case IPAMPoolRemove(id=pool_id):
                self._pools.pop(pool_id, None)
                self._pools_dirty = True

    def _set_endpoint(self, ep_id: WorkloadEndpointID, ep: WorkloadEndpoint | None) -> None:
        old = self._with_nats.get(ep_id)
        if ep is None:
            self._with_nats.pop(ep_id, None)
        else:
            self._with_nats[ep_id] = ep
        if _nat_state(old) != _nat_state(ep):
            self._fips_dirty = True

    def complete_deferred_work(self) -> None:
        if self._fips_dirty:
            for table in self._tables:
                eps = self._with_nats.values()
                table.update_chains(floating_ip_chains(self._cfg, eps, table.ip_version))
            self._fips_dirty = False
        if self._pools_dirty:
            every, masq = pool_sets(self._pools.values())
            for driver in self._ipsets:  # each driver keeps its own family's members
                driver.set_members(naming.IPSET_ID_ALL_POOLS, IPSetType.NET, every)
                driver.set_members(naming.IPSET_ID_MASQ_POOLS, IPSetType.NET, masq)
            for table in self._tables:
                active = nat_outgoing_active(masq, table.ip_version)
                table.update_chains([nat_outgoing_chain(self._cfg, table.ip_version, active)])
            self._pools_dirty = False


def _nat_state(ep: WorkloadEndpoint | None) -> object:
    """What of an endpoint the NAT chains depend on."""
    return None if ep is None else (ep.orchestrator, ep.ipv4_nats, ep.ipv6_nats)
