"""`calicoctl apply|delete --preview`: reachability between the existing endpoints before and
after a change, by the policy trace's own calculation, nothing written.

Both sides are datastore snapshots (ctl.trace_source): the current one, and the same with
the file's resources put in (apply) or taken out (delete). The ends: the workload endpoints
present on both sides, each host (a workload's, a host endpoint's or a Node's) by its own
address, and external addresses: one inside each CIDR the involved rules name, one in each
of the first NETWORK_SET_SAMPLE nets of every network set, and one per family outside all of
those. Every ordered pair of ends but external to external is covered on each probe, before
and after, and only the pairs whose verdict changes are reported. Workload endpoints that no
rule can tell apart (same host, labels, policy-relevant spec, and addresses inside the same
of the datastore's CIDRs) form a class, and one pair per pair of classes is traced: the work
grows with the classes, not with the square of the endpoints. The probes are the protocols
and destination ports the involved policies' and profiles' rules name (their old and new
versions): a numeric port or a range's first port; a rule with a protocol but no port is
probed on a port no rule names; a rule naming no protocol, with TCP on such a port and with
ICMP. One IP family per pair: IPv4 where both ends have it, else IPv6. A host with no
recorded address (Node addresses, host endpoint expectedIPs) is not probed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from calico.calc.messages import WorkloadEndpointID
from calico.ctl.trace_source import (
    EndError,
    HostReports,
    Snapshot,
    address_end,
    host_end,
    host_input,
    host_reports,
    unresolved_crossing,
    workload_ends,
)
from calico.datastore.client import ResourceClient
from calico.model.base import Resource
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.model.keys import key_of
from calico.model.network import Node
from calico.model.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
)
from calico.model.rules import Rule
from calico.rules.trace import End, Flow, HostInput, render_hosts, trace_rendered
from calico.rules.trace_tables import HostTables

_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "icmp": 1, "icmpv6": 58}
_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP", 136: "UDPLite", 1: "ICMP", 58: "ICMPv6"}
_PORTED = frozenset({6, 17, 132, 136})
_ECHO = {4: (1, 8), 6: (58, 128)}  # (protocol, echo request type) per family
GROUP_ABOVE = 20
"""More endpoints than this in the changes: they are grouped by namespace and labels."""


class PreviewError(ValueError):
    """A flow the trace cannot evaluate: no preview rather than a guess."""


@dataclass(frozen=True, slots=True, order=True)
class Probe:
    protocol: str  # TCP, UDP, SCTP, UDPLite, ICMP (ICMPv6 for an IPv6 pair)
    port: int | None = None

    def describe(self, ip_version: int) -> str:
        if self.protocol == "ICMP":
            return "ICMPv6" if ip_version == 6 else "ICMP"
        return f"{self.protocol} {self.port}"


@dataclass(frozen=True, slots=True, order=True)
class Change:
    change: str  # "newly allowed" or "newly denied"
    src: str
    dst: str
    what: str


def changed(resources: Sequence[Resource], delete: bool, snapshot: Snapshot) -> Snapshot:
    """`snapshot` with `resources` applied (replacing what has their key) or deleted."""
    keys = {key_of(r) for r in resources}
    kept = [r for r in snapshot.resources if key_of(r) not in keys]
    return Snapshot(tuple(kept if delete else [*kept, *resources]))


def probes(rule_sets: Iterable[Resource]) -> list[Probe]:
    """What the rules of these policies and profiles name (see the module doc)."""
    rules = [r for res in rule_sets for r in _rules(res)]
    named: set[tuple[str, int | None]] = set()
    for rule in rules:
        proto = _protocol(rule.protocol)
        if proto is None or proto in ("ICMP", "ICMPv6"):
            named.add((proto or "", None))
            continue
        ports = [p for p in (rule.destination.ports if rule.destination else None) or ()]
        numeric = [_first_port(p) for p in ports]
        named |= {(proto, p) for p in numeric if p is not None}
        if not ports:
            named.add((proto, None))
    used = {p for _, p in named if p is not None}
    other = next(p for p in range(1, 65536) if p not in used)  # a port no rule names
    out: set[Probe] = set()
    for proto, port in named:
        if proto == "":
            out |= {Probe("TCP", other), Probe("ICMP")}
        elif proto in ("ICMP", "ICMPv6"):
            out.add(Probe("ICMP"))
        else:
            out.add(Probe(proto, other if port is None else port))
    return sorted(out)


class Outcome(NamedTuple):
    changes: list[Change]
    compared: int
    """(endpoint pair, probe) combinations the verdicts cover."""
    traced: int
    """Traces run: one per class pair and probe, before and after counted once."""


def preview(client: ResourceClient, resources: Sequence[Resource], delete: bool) -> Outcome:
    """The reachability changes between the ends both snapshots hold (see the module doc)."""
    before = Snapshot.load(client)
    after = changed(resources, delete, before)
    involved = [*_rule_sets(resources), *_rule_sets(_replaced(before, resources))]
    if not involved:
        return Outcome([], 0, 0)
    wanted = probes(involved)
    common = _common_workloads(before, after)
    hosts = _hosts(common.values(), before, after)
    reports = host_reports(client, hosts)  # the same datastore read for both sides
    sides = [_side(snap, reports) for snap in (before, after)]
    group = len(common) > GROUP_ABOVE
    classes = [
        *(
            [_workload_party(w) for w in members]
            for members in _classes(common.values(), _cidrs(before, after))
        ),
        *([party] for party in _host_parties(hosts, before, after)),
        *([party] for party in _external_parties(involved, before, after)),
    ]
    changes: set[Change] = set()
    compared = traced = 0
    for src_class in classes:
        for dst_class in classes:
            pairs = [(s, d) for s in src_class for d in dst_class if s is not d]
            if not pairs or (src_class[0].external and dst_class[0].external):
                continue
            src, dst = pairs[0]
            version = next((v for v in (4, 6) if v in src.ends and v in dst.ends), None)
            if version is None:
                continue
            a, b = src.ends[version], dst.ends[version]
            for inputs, _ in sides:
                refused = unresolved_crossing(inputs, a, b) or unresolved_crossing(inputs, b, a)
                if refused:
                    raise PreviewError(f"cannot preview {src.name} → {dst.name}: {refused}")
            for probe in wanted:
                flow = _flow(a, b, probe, version)
                try:
                    verdicts = [trace_rendered(h, r[version], flow).verdict for h, r in sides]
                except ValueError as exc:  # the walk refuses what it cannot model
                    what = f"{src.name} → {dst.name} {probe.describe(version)}"
                    raise PreviewError(f"cannot preview {what}: {exc}") from None
                traced += 1
                compared += len(pairs)
                if verdicts[0] == verdicts[1]:
                    continue
                word = "newly allowed" if verdicts[1] == "allow" else "newly denied"
                changes |= {
                    Change(word, s.shown(group), d.shown(group), probe.describe(version))
                    for s, d in pairs
                }
    return Outcome(sorted(changes), compared, traced)


@dataclass(frozen=True, eq=False)
class _Party:
    """One end a flow is previewed from or to: its address per IP family."""

    name: str
    group_name: str
    ends: dict[int, End]
    external: bool = False

    def shown(self, group: bool) -> str:
        return self.group_name if group else self.name


def _workload_party(w: WorkloadEndpoint) -> _Party:
    return _Party(_text(w), _label_set(w), workload_ends(w))


def _hosts(workloads: Iterable[WorkloadEndpoint], *snapshots: Snapshot) -> list[str]:
    """Every host a workload, a host endpoint or a Node names."""
    named = {w.spec.node for w in workloads}
    for snapshot in snapshots:
        named |= {r.spec.node for r in snapshot.resources if isinstance(r, HostEndpoint)}
        named |= {r.name for r in snapshot.resources if isinstance(r, Node)}
    return sorted(h for h in named if h)


def _host_parties(hosts: Sequence[str], *snapshots: Snapshot) -> list[_Party]:
    """Each host itself, by its first own address per family (a Node's or host endpoint's,
    before the change or else after it); a host with no recorded address is left out."""
    parties = []
    for host in hosts:
        ends: dict[int, End] = {}
        for version in (4, 6):
            for snapshot in snapshots:
                with contextlib.suppress(EndError):
                    ends.setdefault(version, host_end(snapshot, host, version))
        if ends:
            parties.append(_Party(f"host {host}", f"host {host}", ends))
    return parties


NETWORK_SET_SAMPLE = 16
"""Nets of each network set an external address is probed in."""
_OUTSIDE = {4: ("192.0.2.1", "198.51.100.1", "203.0.113.1"), 6: ("2001:db8:ffff::1", "3fff::1")}


def _external_parties(involved: Sequence[Resource], *snapshots: Snapshot) -> list[_Party]:
    """Addresses outside every workload and host: one in each CIDR the involved rules name,
    in the first NETWORK_SET_SAMPLE nets of each network set, and one per family in none of
    those."""
    named: list[IPNetwork] = []
    for rule in (r for res in involved for r in _rules(res)):
        for side in (rule.source, rule.destination):
            for net in [*(side.nets or ()), *(side.notNets or ())] if side else ():
                with contextlib.suppress(ValueError):
                    named.append(ipaddress.ip_network(str(net), strict=False))
    for snapshot in snapshots:
        for r in snapshot.resources:
            if isinstance(r, NetworkSet | GlobalNetworkSet):
                nets = list(r.spec.nets or ())[:NETWORK_SET_SAMPLE]
                named += [ipaddress.ip_network(str(n), strict=False) for n in nets]
    candidates = [n.network_address + (1 if n.num_addresses > 1 else 0) for n in named]
    for outside in _OUTSIDE.values():
        free = [a for a in map(ipaddress.ip_address, outside) if not any(a in n for n in named)]
        candidates += free[:1]
    parties: dict[str, _Party] = {}
    for address in candidates:
        if str(address) in parties:
            continue
        end = address_end(snapshots[0], str(address))
        if end.host is None and end.workload is None:
            name = f"external {address}"
            parties[str(address)] = _Party(name, name, {address.version: end}, external=True)
    return list(parties.values())


def _classes(
    workloads: Iterable[WorkloadEndpoint], cidrs: Sequence[IPNetwork]
) -> list[list[WorkloadEndpoint]]:
    """The workloads grouped so that any two in a group get the same verdicts, as source or
    destination, against any peer: the same host, namespace, labels and every spec field
    but those that only name the endpoint (interface, MAC, workload and container names),
    and addresses inside the same of the datastore's CIDRs. A field not known to be neutral
    stays in the key, so an unknown difference splits a group rather than merging one."""
    groups: dict[str, list[WorkloadEndpoint]] = {}
    for wep in workloads:
        spec = wep.spec.model_dump(mode="json", exclude=set(_NAMING_FIELDS), exclude_none=True)
        nets = [ipaddress.ip_network(str(n), strict=False) for n in wep.spec.ipNetworks or ()]
        inside = [[n.version, *(i for i, c in enumerate(cidrs) if _overlaps(n, c))] for n in nets]
        key = [wep.namespace, wep.metadata.labels or {}, spec, inside]
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(wep)
    return list(groups.values())


_NAMING_FIELDS = frozenset(
    {"workload", "containerID", "pod", "endpoint", "ipNetworks", "interfaceName", "mac"}
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _cidrs(*snapshots: Snapshot) -> list[IPNetwork]:
    """Every address or CIDR any resource but a workload endpoint names (rules' nets,
    network sets, pools, host endpoints' IPs, ...), found by value rather than by field so
    that none is missed."""
    found: set[IPNetwork] = set()

    def scan(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                scan(item)
        elif isinstance(value, list):
            for item in value:
                scan(item)
        elif isinstance(value, str) and ("." in value or ":" in value):
            with contextlib.suppress(ValueError):
                found.add(ipaddress.ip_network(value, strict=False))

    for snapshot in snapshots:
        for resource in snapshot.resources:
            if not isinstance(resource, WorkloadEndpoint):
                scan(resource.model_dump(mode="json"))
    return sorted(found, key=lambda n: (n.version, n))


def _overlaps(net: IPNetwork, cidr: IPNetwork) -> bool:
    return net.version == cidr.version and net.overlaps(cidr)


def render_changes(changes: Sequence[Change]) -> str:
    return "".join(f"{c.change}: {c.src} → {c.dst} {c.what}\n" for c in changes)


def _side(
    snapshot: Snapshot, reports: Mapping[str, HostReports]
) -> tuple[dict[str, HostInput], dict[int, dict[str, HostTables]]]:
    inputs = {h: host_input(snapshot, h, r) for h, r in reports.items()}
    considered = snapshot.considered()
    return inputs, {v: render_hosts(inputs, v, considered) for v in (4, 6)}


def _rules(resource: Resource) -> list[Rule]:
    spec = getattr(resource, "spec", None)
    return [*(getattr(spec, "ingress", None) or ()), *(getattr(spec, "egress", None) or ())]


def _rule_sets(resources: Iterable[Resource]) -> list[Resource]:
    return [r for r in resources if isinstance(r, NetworkPolicy | GlobalNetworkPolicy | Profile)]


def _replaced(snapshot: Snapshot, resources: Sequence[Resource]) -> list[Resource]:
    keys = {key_of(r) for r in resources}
    return [r for r in snapshot.resources if key_of(r) in keys]


def _protocol(value: int | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) or value.isdigit():
        return _NAMES.get(int(value), str(value))
    return _NAMES.get(_NUMBERS.get(value.lower(), -1), value)


def _first_port(port: int | str) -> int | None:
    """A numeric port, or a range's first; None for a named port."""
    if isinstance(port, int):
        return port
    first = port.split(":", 1)[0]
    return int(first) if first.isdigit() else None


def _common_workloads(
    before: Snapshot, after: Snapshot
) -> dict[WorkloadEndpointID, WorkloadEndpoint]:
    def ids(snap: Snapshot) -> dict[WorkloadEndpointID, WorkloadEndpoint]:
        return {WorkloadEndpointID(w.namespace or "default", w.name): w for w in snap.workloads()}

    old, new = ids(before), ids(after)
    return {i: old[i] for i in sorted(old.keys() & new.keys(), key=lambda i: (i.namespace, i.name))}


def _text(w: WorkloadEndpoint) -> str:
    """NAMESPACE/WORKLOAD as `policy trace --from` takes it: the pod (or workload) name."""
    return f"{w.namespace or 'default'}/{w.spec.pod or w.spec.workload or w.name}"


def _label_set(w: WorkloadEndpoint) -> str:
    labels = ",".join(
        f"{k}={v}" for k, v in sorted((w.metadata.labels or {}).items()) if "projectcalico" not in k
    )
    return f"{w.namespace or 'default'}/{{{labels}}}"


def _flow(src: End, dst: End, probe: Probe, version: int) -> Flow:
    if probe.protocol == "ICMP":
        number, echo = _ECHO[version]
        return Flow(src, dst, number, icmp_type=echo, icmp_code=0)
    number = _NUMBERS[probe.protocol.lower()]
    ported = number in _PORTED
    return Flow(
        src,
        dst,
        number,
        dst_port=probe.port if ported else None,
        src_port=32768 if ported else None,
    )
