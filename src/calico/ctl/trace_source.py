"""The policy trace's inputs from a datastore snapshot: Felix's calculation, per host.

Lists the kinds the calculation graph calculates with, decodes them with Felix's resource
decoder (so a broken policy is salvaged into a deny-all stand-in, as Felix enforces it) and
feeds them, as one batch then in-sync, through a `CalcGraph` for each host the flow
touches, as Felix's calc thread does; the messages that graph sends are folded into that
host's `HostState`. The rule settings are the host's Felix's as far as the datastore says
(FelixConfiguration `default` < `node.<host>`; its environment and config file are not
visible from here). Endpoints named on the command line (NAMESPACE/WORKLOAD) or by address
(a workload's, a workload's floating IP, a host's own, or external) resolve here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

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
from calico.datastore.api import KeyValue, SyncStatus, Update, UpdateKind
from calico.datastore.client import ResourceClient
from calico.datastore.resource_syncer import ResourceDecoder, ResourceUpdate
from calico.felix.config import build_config
from calico.felix.settings import datastore_specs, rules_config
from calico.model.base import Resource
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.errors import ResourceError
from calico.model.keys import key_of, kind_prefix
from calico.model.network import IPPool, Node
from calico.model.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)
from calico.model.status_keys import (
    FELIX_STATUS_ROOT,
    host_endpoint_interfaces_key,
    rules_settings_key,
    status_prefix,
)
from calico.rules.config import RulesConfig
from calico.rules.trace import End, HostInput
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
    IPPool,
)
DEFAULT_UPLINK = "eth0"
T = TypeVar("T")


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

    def uplink(self, hostname: str, resolved: Mapping[str, str] | None = None) -> str:
        """The interface off-host traffic leaves by: the host's (first by name) host
        endpoint with an interface (its name, or the one Felix `resolved` it to), else
        eth0."""
        ifaces = sorted(
            (r.name, r.spec.interfaceName or (resolved or {}).get(r.name))
            for r in self.resources
            if isinstance(r, HostEndpoint) and r.spec.node == hostname
        )
        named = [iface for _, iface in ifaces if iface not in (None, "*")]
        return str(named[0]) if named else DEFAULT_UPLINK


def host_input(snapshot: Snapshot, hostname: str, reports: HostReports) -> HostInput:
    """One host as its Felix renders it: the calculation's view of it, its rule settings,
    and its host endpoints on the interfaces its Felix reported they resolved to (without
    a report, those naming their interface; see `unresolved_crossing`)."""
    state = snapshot.host_state(hostname)
    resolved = reports.interfaces
    if resolved is not None:
        state.host_endpoints = {
            hid: dataclasses.replace(hep, interface_name=resolved[hid.name])
            for hid, hep in state.host_endpoints.items()
            if hid.name in resolved  # else Felix found no interface: no chains
        }
    return HostInput(state, reports.rules, snapshot.uplink(hostname, resolved))


def unresolved_crossing(hosts: Mapping[str, HostInput], end: End, other: End) -> str | None:
    """Why a flow from or to host `end` cannot be traced, if so: a host endpoint of its
    host is known by expected IPs only and its Felix never reported the interface it
    resolved to (the addresses live on the host are not visible here)."""
    if not end.is_host or other.host == end.host:
        return None
    unresolved = sorted(
        hid.name
        for hid, hep in hosts[str(end.host)].state.host_endpoints.items()
        if not hep.interface_name
    )
    if not unresolved:
        return None
    return (
        f"host {end.host}'s host endpoint {unresolved[0]} has no interfaceName (found by "
        "expected IPs) and its Felix has not reported the interface: its traffic is not traced"
    )


@dataclass(frozen=True, slots=True)
class HostReports:
    """What a host's Felix reported, as far as the trace uses it."""

    rules: RulesConfig
    """The rule settings it renders with: as it reported them at its last start (environment
    and config file included), else from the datastore's layers alone."""
    interfaces: dict[str, str] | None
    """{host endpoint name: interface} it resolved them to; None when it never reported."""


def host_reports(client: ResourceClient, hostnames: Iterable[str]) -> dict[str, HostReports]:
    """Each host's reports (in any region), read once so that callers tracing several
    snapshots share them: a get per key in no-region, and for the keys not there one
    listing of every region, the first match in key order."""
    keys = {h: (host_endpoint_interfaces_key(h), rules_settings_key(h)) for h in hostnames}
    found = {key: client.backend.get(key) for pair in keys.values() for key in pair}
    missing = [key for key, kv in found.items() if kv is None]
    if missing:
        leaves = {key.rsplit("/", 1)[1] for key in missing}
        listing = client.backend.list(FELIX_STATUS_ROOT + "/").items
        # It holds every endpoint's status too: match against the report keys alone.
        reported = [kv for kv in listing if kv.key.rsplit("/", 1)[1] in leaves]
        for key in missing:
            suffix = "/host/" + key[len(status_prefix()) :]
            found[key] = next((kv for kv in reported if kv.key.endswith(suffix)), None)
    out = {}
    for host, (interfaces_key, rules_key) in keys.items():
        interfaces = _parsed(found[interfaces_key], _interfaces)
        rules = _parsed(found[rules_key], RulesConfig.from_json)
        if rules is None:
            cfg = build_config({"NODENAME": host}, None, *datastore_specs(client, host))
            rules = rules_config(cfg)
        out[host] = HostReports(rules, interfaces)
    return out


def _parsed(kv: KeyValue | None, parse: Callable[[object], T]) -> T | None:
    if kv is None:
        return None
    try:
        return parse(json.loads(kv.value))
    except ValueError as exc:  # garbage: no trace rather than one guessing Felix's view
        raise ResourceError(kv.key, [("", str(exc))]) from None


def _interfaces(data: object) -> dict[str, str]:
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("not a JSON object of host endpoint names to interface names")
    return data


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
    ends = workload_ends(found[0])
    for version in [ip_version] if ip_version else [4, 6]:
        if version in ends:
            return ends[version]
    family = f"IPv{ip_version} " if ip_version else ""
    raise EndError(f"workload endpoint {text} has no {family}address")


def address_end(snapshot: Snapshot, address: str) -> End:
    """The workload that owns `address`, or whose NAT mapping's external IP (floating IP)
    it is (whether its host translates it is the trace's to find), the host whose own
    address it is (a Node's BGP, VXLAN tunnel or listed address, or a host endpoint's
    expected IP), or an external end."""
    addr = ipaddress.ip_address(address)
    for wep in snapshot.workloads():
        for net in wep.spec.ipNetworks or ():
            if addr in ipaddress.ip_network(str(net), strict=False):
                return end_of(wep, str(addr))
    mapped = [
        wep
        for wep in snapshot.workloads()
        if any(ipaddress.ip_address(n.externalIP) == addr for n in wep.spec.ipNATs or ())
    ]
    if len(mapped) > 1:
        names = ", ".join(sorted(f"{w.namespace}/{w.name}" for w in mapped))
        raise EndError(f"{addr} is the floating IP of several workload endpoints ({names})")
    if mapped:
        return end_of(mapped[0], str(addr))
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


def source_override(end: End, address: str) -> End:
    """A workload end sending from `address` (of its family) instead of its own: a
    spoofed source, or one of its allowSpoofedSourcePrefixes."""
    return End(str(ipaddress.ip_address(address)), end.host, end.workload, end.iface)


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


def workload_ends(wep: WorkloadEndpoint) -> dict[int, End]:
    """The trace's end for a workload endpoint per IP family: its first address of each."""
    ends: dict[int, End] = {}
    for net in wep.spec.ipNetworks or ():
        address = ipaddress.ip_network(str(net), strict=False).network_address
        ends.setdefault(address.version, end_of(wep, str(address)))
    return ends


def end_of(wep: WorkloadEndpoint, address: str) -> End:
    """The trace's end for one of a workload endpoint's addresses."""
    ns = wep.namespace or "default"
    iface = str(wep.spec.interfaceName) if wep.spec.interfaceName else None
    return End(address, wep.spec.node or None, WorkloadEndpointID(ns, wep.name), iface)


def hosts_of(ends: Iterable[End]) -> list[str]:
    return sorted({e.host for e in ends if e.host is not None})
