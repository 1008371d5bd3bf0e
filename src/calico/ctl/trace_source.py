"""The policy trace's inputs from a datastore snapshot: Felix's calculation, per host.

Lists the kinds the calculation graph calculates with, decodes them with Felix's resource
decoder (so a broken policy is salvaged into a deny-all stand-in, as Felix enforces it) and
feeds them, as one batch then in-sync, through a `CalcGraph` for each host the flow
touches, as Felix's calc thread does; the messages that graph sends are folded into that
host's `HostState`. The rule settings are the host's Felix's as far as the datastore says
(FelixConfiguration `default` < `node.<host>`; its environment and config file are not
visible from here). Endpoints named on the command line (NAMESPACE/WORKLOAD) or by address
(a workload's, a host's own, or external) resolve here.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from calico.calc.graph import CalcGraph
from calico.calc.messages import WorkloadEndpointID
from calico.calc.policy_resolver import (
    host_tiers,
    policy_id,
    policy_meta,
    tier_meta,
    workload_tiers,
)
from calico.calc.salvage import salvage_policy
from calico.datastore.api import SyncStatus, Update, UpdateKind
from calico.datastore.client import ResourceClient
from calico.datastore.resource_syncer import ResourceDecoder, ResourceUpdate
from calico.felix.config import build_config
from calico.felix.settings import datastore_specs, rules_config
from calico.model.base import Resource
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.errors import ResourceError
from calico.model.keys import key_of, kind_prefix
from calico.model.network import Node
from calico.model.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)
from calico.model.status_keys import FELIX_STATUS_ROOT, rules_settings_key, status_prefix
from calico.rules.config import RulesConfig
from calico.rules.trace import End
from calico.rules.trace_tables import Considered, HostState

CALCULATED_KINDS: tuple[type[Resource], ...] = (
    Tier,
    Profile,
    GlobalNetworkPolicy,
    NetworkPolicy,
    GlobalNetworkSet,
    NetworkSet,
    HostEndpoint,
    WorkloadEndpoint,
    Node,
)
DEFAULT_UPLINK = "eth0"


class EndError(ValueError):
    """A --from/--to value that names no workload (message says why)."""


class _Collected:
    """ResourceCallbacks keeping what the decoder hands on."""

    def __init__(self) -> None:
        self.resources: list[Resource] = []

    def on_status(self, status: SyncStatus) -> None:
        """A one-shot listing has no status to follow."""

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        self.resources += [u.resource for u in updates if u.resource is not None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    resources: tuple[Resource, ...]

    @classmethod
    def load(cls, client: ResourceClient) -> Snapshot:
        collected = _Collected()
        decoder = ResourceDecoder(collected, salvage=salvage_policy)
        for kind in CALCULATED_KINDS:
            listing = client.backend.list(kind_prefix(kind))
            decoder.on_updates(
                [Update(UpdateKind.NEW, kv.key, kv.value, kv.mod_revision) for kv in listing.items]
            )
        return cls(tuple(collected.resources))

    def workloads(self) -> list[WorkloadEndpoint]:
        return [r for r in self.resources if isinstance(r, WorkloadEndpoint)]

    def host_state(self, hostname: str) -> HostState:
        state = HostState()
        graph = CalcGraph(hostname, state.on_messages)
        graph.on_updates([(key_of(r), r) for r in self.resources])
        graph.on_status(SyncStatus.IN_SYNC)
        return state

    def considered(self) -> Considered:
        """Every policy, ordered by the calc's own rules, as if each selected an endpoint."""
        metas = [
            policy_meta(policy_id(r), r)
            for r in self.resources
            if isinstance(r, NetworkPolicy | GlobalNetworkPolicy)
        ]
        tiers = {r.name: tier_meta(r) for r in self.resources if isinstance(r, Tier)}
        return Considered(workload_tiers(metas, tiers), host_tiers(metas, tiers))

    def uplink(self, hostname: str) -> str:
        """The interface off-host traffic leaves by: the host's (first by name) host
        endpoint with an interface name, else eth0."""
        named = sorted(
            (r.name, r.spec.interfaceName)
            for r in self.resources
            if isinstance(r, HostEndpoint)
            and r.spec.node == hostname
            and r.spec.interfaceName not in (None, "*")
        )
        return str(named[0][1]) if named else DEFAULT_UPLINK


def rules_settings(client: ResourceClient, hostname: str) -> RulesConfig:
    """The rule settings `hostname`'s Felix renders with: as it reported them at its last
    start (environment and config file included), else from the datastore's layers alone."""
    reported = _reported_settings(client, hostname)
    if reported is not None:
        return reported
    cfg = build_config({"NODENAME": hostname}, None, *datastore_specs(client, hostname))
    return rules_config(cfg)


def _reported_settings(client: ResourceClient, hostname: str) -> RulesConfig | None:
    kv = client.backend.get(rules_settings_key(hostname))
    if kv is None:  # not in no-region: look in every region
        suffix = rules_settings_key(hostname)[len(status_prefix()) :]
        found = [
            kv
            for kv in client.backend.list(FELIX_STATUS_ROOT + "/").items
            if kv.key.endswith("/host/" + suffix)
        ]
        kv = found[0] if found else None
    if kv is None:
        return None
    try:
        return RulesConfig.from_json(json.loads(kv.value))
    except ValueError as exc:  # garbage: no trace rather than one with guessed settings
        raise ResourceError(kv.key, [("", str(exc))]) from None


def workload_end(snapshot: Snapshot, text: str, ip_version: int | None) -> End:
    """NAMESPACE/WORKLOAD: the endpoint's name, pod or workload; its first address of the
    family (`ip_version`, else IPv4 when it has one)."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise EndError(f"{text!r} is not NAMESPACE/WORKLOAD")
    found = [
        w
        for w in snapshot.workloads()
        if w.namespace == namespace and name in (w.name, w.spec.pod, w.spec.workload)
    ]
    if not found:
        raise EndError(f"no workload endpoint {text}")
    if len(found) > 1:
        names = ", ".join(sorted(w.name for w in found))
        raise EndError(f"{text} names several workload endpoints ({names}): use one of those")
    wep = found[0]
    addresses = _addresses(wep)
    versions = [ip_version] if ip_version else [4, 6]
    for version in versions:
        for address in addresses:
            if ipaddress.ip_address(address).version == version:
                return end_of(wep, address)
    family = f"IPv{ip_version} " if ip_version else ""
    raise EndError(f"workload endpoint {text} has no {family}address")


def address_end(snapshot: Snapshot, address: str) -> End:
    """The workload that owns `address`, the host whose own address it is (a Node's BGP,
    VXLAN tunnel or listed address, or a host endpoint's expected IP), or an external end."""
    addr = ipaddress.ip_address(address)
    for wep in snapshot.workloads():
        for net in wep.spec.ipNetworks or ():
            if addr in ipaddress.ip_network(str(net), strict=False):
                return end_of(wep, str(addr))
    return End(str(addr), _host_with_address(snapshot, addr))


def host_end(snapshot: Snapshot, name: str, ip_version: int | None) -> End:
    """Host `name` itself, by its first own address of the family (`ip_version`, else IPv4
    when it has one), in `_host_with_address`'s order."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for r in snapshot.resources:
        if (isinstance(r, Node) and r.name == name) or (
            isinstance(r, HostEndpoint) and r.spec.node == name
        ):
            found += [a for a in map(_ip, _own_addresses(r)) if a is not None]
    if not found:
        raise EndError(f"no address of host {name} (Node addresses, host endpoint expectedIPs)")
    for version in [ip_version] if ip_version else [4, 6]:
        for addr in found:
            if addr.version == version:
                return End(str(addr), name)
    raise EndError(f"host {name} has no IPv{ip_version} address")


def _own_addresses(r: Resource) -> list[object]:
    """A Node's or host endpoint's record of its host's addresses."""
    found: list[object] = []
    if isinstance(r, Node):
        bgp, spec = r.spec.bgp, r.spec
        found += [bgp.ipv4Address, bgp.ipv6Address] if bgp else []
        found += [spec.ipv4VXLANTunnelAddr, spec.ipv6VXLANTunnelAddr]
        found += [a.address for a in spec.addresses or ()]
    elif isinstance(r, HostEndpoint):
        found += list(r.spec.expectedIPs or ())
    return [t for t in found if t]


def _host_with_address(
    snapshot: Snapshot, addr: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> str | None:
    for r in snapshot.resources:
        host = str(r.spec.node) if isinstance(r, HostEndpoint) else r.name
        if any(_ip(t) == addr for t in _own_addresses(r)):
            return host
    return None


def _ip(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of "a.b.c.d" or "a.b.c.d/len"; None for anything else."""
    try:
        return ipaddress.ip_interface(str(text)).ip
    except ValueError:
        return None


def _addresses(wep: WorkloadEndpoint) -> list[str]:
    nets = wep.spec.ipNetworks or ()
    return [str(ipaddress.ip_network(str(n), strict=False).network_address) for n in nets]


def end_of(wep: WorkloadEndpoint, address: str) -> End:
    """The trace's end for one of a workload endpoint's addresses."""
    ns = wep.namespace or "default"
    iface = str(wep.spec.interfaceName) if wep.spec.interfaceName else None
    return End(address, wep.spec.node or None, WorkloadEndpointID(ns, wep.name), iface)


def hosts_of(ends: Iterable[End]) -> list[str]:
    return sorted({e.host for e in ends if e.host is not None})
