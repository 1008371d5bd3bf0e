"""Workload and host endpoint messages -> endpoint chains, dispatch, routes and sysctls.

Role: keeps the desired state of everything per-endpoint in the drivers:
- filter: `cali-tw-/cali-fw-<iface>` per workload and the policy group chains they share
  (each removed with the last workload jumping to it), the workload dispatch trees, and the
  host endpoint chains and dispatch; raw and mangle: host endpoint untracked / pre-DNAT
  chains and their dispatch, and `cali-rpf-skip` (workloads' allowed spoofed prefixes);
- routes: one /32 (/128) per workload address on its interface, with the workload's MAC,
  and one per floating IP (external IP of its NAT mappings) so that BIRD can advertise it;
- links: Calico's per-interface sysctls.
Dispatch chains are always installed, even empty, because the static chains jump to them
(a missing jump target would be stubbed with drop-all).

Host endpoints name their interface, or are found by one of their expected IPs on the
interfaces the monitor reports; "*" means all host interfaces.
No kernel I/O happens here: `on_update`/`on_iface_*` record intent and
`complete_deferred_work` pushes it into the drivers, which the loop then applies.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from calico.calc.messages import (
    HostEndpoint,
    HostEndpointID,
    HostEndpointRemove,
    HostEndpointUpdate,
    Message,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.dataplane.drivers.iptables_table import IptablesTable
from calico.dataplane.drivers.links import LinkConfigurator
from calico.dataplane.drivers.routetable import RouteTable, RouteTarget
from calico.rules.config import RulesConfig
from calico.rules.dispatch import DispatchMemo, workload_dispatch_chains
from calico.rules.endpoints import (
    host_endpoint_chains,
    is_policy_group,
    workload_endpoint_chains,
)
from calico.rules.model import Chain
from calico.rules.nat import endpoint_nats
from calico.rules.static import static_raw_chains

# (endpoint ID, the workload endpoint as programmed (None for a host endpoint), "up", "down",
# "error", or None once it is gone): the status reporter keys workloads by their fields.
StatusCallback = Callable[
    [WorkloadEndpointID | HostEndpointID, WorkloadEndpoint | None, str | None], None
]
# Host endpoint name -> the interface it resolved to, after every change of that mapping.
ResolvedCallback = Callable[[Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class _IfaceState:
    up: bool
    index: int


class EndpointManager:
    def __init__(
        self,
        cfg: RulesConfig,
        tables: Sequence[IptablesTable],
        route_tables: Mapping[int, RouteTable],
        links: LinkConfigurator,
        on_status: StatusCallback | None = None,
        on_host_endpoints: ResolvedCallback | None = None,
    ) -> None:
        self._cfg = cfg
        self._tables = {(t.table, t.ip_version): t for t in tables}
        self._routes = route_tables
        self._links = links
        self._on_status = on_status
        self._on_host_endpoints = on_host_endpoints
        self._resolved: dict[str, str] | None = None  # as last reported
        self._weps: dict[WorkloadEndpointID, WorkloadEndpoint] = {}
        self._heps: dict[HostEndpointID, HostEndpoint] = {}
        self._ifaces: dict[str, _IfaceState] = {}
        self._addrs: dict[str, set[str]] = {}
        self._dirty_weps: set[WorkloadEndpointID] = set()
        self._programmed: dict[WorkloadEndpointID, WorkloadEndpoint] = {}
        self._hep_chains: dict[tuple[str, int], set[str]] = {}  # (table, family) -> chain names
        # The policy group chains (rules/endpoints.py) each workload's chains jump to, and
        # how many workloads jump to each: a group goes with its last workload.
        self._groups_of: dict[WorkloadEndpointID, set[str]] = {}
        self._group_refs: Counter[str] = Counter()
        self._dispatch_dirty = True  # the set of workload interfaces changed
        self._rpf_dirty = True  # some workload's allowed spoofed prefixes changed
        self._dispatch_memo = DispatchMemo()
        self._dispatch_names: set[str] = set()
        self._heps_dirty = True
        self._statuses: dict[WorkloadEndpointID | HostEndpointID, str] = {}

    # -- inputs ---------------------------------------------------------------------------

    def on_update(self, msg: Message) -> None:
        match msg:
            case WorkloadEndpointUpdate(id=ep_id, endpoint=ep):
                self._weps[ep_id] = ep
                self._dirty_weps.add(ep_id)
            case WorkloadEndpointRemove(id=ep_id):
                self._weps.pop(ep_id, None)
                self._dirty_weps.add(ep_id)
            case HostEndpointUpdate(id=hep_id, endpoint=hep):
                self._heps[hep_id] = hep
                self._heps_dirty = True
            case HostEndpointRemove(id=hep_id):
                self._heps.pop(hep_id, None)
                self._heps_dirty = True

    def on_iface_state(self, iface: str, up: bool, index: int) -> None:
        if index == 0:
            self._ifaces.pop(iface, None)
        else:
            self._ifaces[iface] = _IfaceState(up, index)
        for table in self._routes.values():
            table.on_iface_state(iface, up, index)
        self._links.on_iface_state(iface, up, index)
        self._heps_dirty = True  # host endpoints may now resolve differently

    def on_iface_addrs(self, iface: str, addrs: set[str]) -> None:
        self._addrs[iface] = set(addrs)
        self._heps_dirty = True

    # -- deferred work --------------------------------------------------------------------

    def complete_deferred_work(self) -> None:
        for ep_id in sorted(self._dirty_weps, key=lambda i: (i.namespace, i.name)):
            self._sync_workload(ep_id)
        self._dirty_weps.clear()
        unused = [name for name, refs in self._group_refs.items() if refs <= 0]
        for name in unused:
            del self._group_refs[name]
        for family in self._cfg.ip_versions:
            self._tables[("filter", family)].remove_chains(unused)
        self._sync_workload_dispatch()
        if self._heps_dirty:
            self._sync_host_endpoints()
            self._heps_dirty = False
        self._report_statuses()

    def _sync_workload(self, ep_id: WorkloadEndpointID) -> None:
        old = self._programmed.pop(ep_id, None)
        new = self._weps.get(ep_id)
        self._dispatch_dirty |= _iface_of(old) != _iface_of(new)
        self._rpf_dirty |= _spoofing(old) != _spoofing(new)
        if old is not None and (new is None or old.interface_name != new.interface_name):
            self._remove_workload_iface(old.interface_name)
        self._group_refs.subtract(self._groups_of.pop(ep_id, ()))
        if new is None:
            self._set_status(ep_id, old, None)
            return
        chains = workload_endpoint_chains(self._cfg, new)
        groups = {c.name for c in chains if is_policy_group(c.name)}
        self._group_refs.update(groups)
        if groups:
            self._groups_of[ep_id] = groups
        for family in self._cfg.ip_versions:
            self._tables[("filter", family)].update_chains(chains)
        # Most updates under churn only change policies: then the routes and sysctls the
        # drivers hold for the interface are already these.
        if (
            old is None
            or old.interface_name != new.interface_name
            or _routed(old) != _routed(new)
            or _spoofing(old) != _spoofing(new)
        ):
            self._sync_routes_and_sysctls(new)
        self._programmed[ep_id] = new  # last: if a driver raised, the retry redoes it all

    def _sync_routes_and_sysctls(self, ep: WorkloadEndpoint) -> None:
        for family, nets in ((4, ep.ipv4_nets), (6, ep.ipv6_nets)):
            if family in self._routes:
                mac = ep.mac if family == 4 else None
                host_len = 32 if family == 4 else 128
                fips = [f"{n.external_ip}/{host_len}" for n in endpoint_nats(self._cfg, ep, family)]
                self._routes[family].set_routes(
                    ep.interface_name, [RouteTarget(net, mac) for net in (*nets, *fips)]
                )
        spoofing = bool(ep.allow_spoofed_source_prefixes)
        self._links.set_interface(ep.interface_name, spoofing, 6 in self._cfg.ip_versions)

    def _remove_workload_iface(self, iface: str) -> None:
        names = [c.name for c in workload_endpoint_chains(self._cfg, _blank(iface))]
        for family in self._cfg.ip_versions:
            self._tables[("filter", family)].remove_chains(names)
        for table in self._routes.values():
            table.remove_interface(iface)
        self._links.remove_interface(iface)

    def _sync_workload_dispatch(self) -> None:
        """The dispatch trees when interfaces came or went, cali-rpf-skip (with the other
        static raw chains) when allowed spoofed prefixes changed."""
        if self._dispatch_dirty:
            ifaces = sorted(ep.interface_name for ep in self._programmed.values())
            dispatch = workload_dispatch_chains(self._cfg, ifaces, self._dispatch_memo)
            names = {c.name for c in dispatch}
            for family in self._cfg.ip_versions:
                self._tables[("filter", family)].remove_chains(self._dispatch_names - names)
                self._tables[("filter", family)].update_chains(dispatch)
            self._dispatch_names = names  # child chains come and go as the tree reshapes
        if self._rpf_dirty:
            for family in self._cfg.ip_versions:
                raw = static_raw_chains(self._cfg, family, self._programmed.values())
                self._tables[("raw", family)].update_chains(raw)
        self._dispatch_dirty = self._rpf_dirty = False

    def _sync_host_endpoints(self) -> None:
        owners = self._resolve_host_endpoints()
        filt, raw, mangle = host_endpoint_chains(
            self._cfg, {i: self._heps[h] for i, h in owners.items()}
        )
        wanted: dict[tuple[str, int], list[Chain]] = {}
        for family in self._cfg.ip_versions:
            wanted[("filter", family)] = filt
            wanted[("raw", family)] = raw
            wanted[("mangle", family)] = mangle
        for key, chains in wanted.items():
            table = self._tables[key]
            names = {c.name for c in chains}
            table.remove_chains(self._hep_chains.get(key, set()) - names)
            table.update_chains(chains)
            self._hep_chains[key] = names
        resolved = {hep_id.name: iface for iface, hep_id in owners.items()}
        if self._on_host_endpoints is not None and resolved != self._resolved:
            self._on_host_endpoints(resolved)
            self._resolved = resolved
        for hep_id in self._heps:
            self._set_status(hep_id, None, "up" if hep_id in owners.values() else "down")
        for gone in [i for i in self._statuses if isinstance(i, HostEndpointID)]:
            if gone not in self._heps:
                self._set_status(gone, None, None)  # deleted: its status goes too

    def _resolve_host_endpoints(self) -> dict[str, HostEndpointID]:
        """Interface name -> the host endpoint that owns it (first by name wins). Like
        Felix, only interfaces that exist resolve: a host endpoint naming a missing one is
        "down" and gets chains when the interface appears."""
        owners: dict[str, HostEndpointID] = {}
        for hep_id in sorted(self._heps, key=lambda h: h.name):
            hep = self._heps[hep_id]
            iface = hep.interface_name or self._iface_with_address(hep)
            exists = iface == "*" or iface in self._ifaces
            if iface and exists and iface not in owners:
                owners[iface] = hep_id
        return owners

    def _iface_with_address(self, hep: HostEndpoint) -> str | None:
        expected = {
            str(ipaddress.ip_address(a))
            for a in (*hep.expected_ipv4_addrs, *hep.expected_ipv6_addrs)
        }
        for iface in sorted(self._addrs):
            if self._addrs[iface] & expected:
                return iface
        return None

    # -- status ---------------------------------------------------------------------------

    def _report_statuses(self) -> None:
        for ep_id, ep in self._programmed.items():
            state = self._ifaces.get(ep.interface_name)
            self._set_status(ep_id, ep, "up" if state is not None and state.up else "down")

    def _set_status(
        self,
        ep_id: WorkloadEndpointID | HostEndpointID,
        endpoint: WorkloadEndpoint | None,
        status: str | None,
    ) -> None:
        if self._statuses.get(ep_id) == status:
            return
        if status is None:
            self._statuses.pop(ep_id, None)
        else:
            self._statuses[ep_id] = status
        if self._on_status is not None:
            self._on_status(ep_id, endpoint, status)

    def mark_error(self) -> None:
        """Programming failed: every endpoint is in error until an apply succeeds."""
        for ep_id, ep in self._programmed.items():
            self._set_status(ep_id, ep, "error")
        for hep_id in self._heps:
            self._set_status(hep_id, None, "error")

    def workload_endpoints(self) -> Iterable[tuple[WorkloadEndpointID, WorkloadEndpoint]]:
        return self._programmed.items()


def _iface_of(ep: WorkloadEndpoint | None) -> str | None:
    return ep.interface_name if ep is not None else None


def _spoofing(ep: WorkloadEndpoint | None) -> tuple[str, tuple[str, ...]] | None:
    """What an endpoint contributes to cali-rpf-skip."""
    if ep is None or not ep.allow_spoofed_source_prefixes:
        return None
    return ep.interface_name, ep.allow_spoofed_source_prefixes


def _routed(ep: WorkloadEndpoint) -> tuple[object, ...]:
    """What an endpoint's routes are made of (see endpoint_nats)."""
    return (ep.ipv4_nets, ep.ipv6_nets, ep.mac, ep.ipv4_nats, ep.ipv6_nats, ep.orchestrator)


def _blank(iface: str) -> WorkloadEndpoint:
    return WorkloadEndpoint(iface, None, (), (), (), ())
