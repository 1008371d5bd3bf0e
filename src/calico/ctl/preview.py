"""`calicoctl apply|delete --preview`: reachability between the existing workload endpoints
before and after a change, by the policy trace's own calculation, nothing written.

Both sides are datastore snapshots (ctl.trace_source): the current one, and the same with
the file's resources put in (apply) or taken out (delete). Every ordered pair of workload
endpoints present on both sides is covered on each probe, before and after, and only the
pairs whose verdict changes are reported. Endpoints that no rule can tell apart (same host,
labels, policy-relevant spec, and addresses inside the same of the datastore's CIDRs) form a
class, and one pair per pair of classes is traced: the work grows with the classes, not
with the square of the endpoints. The probes are the protocols and destination
ports the involved policies' and profiles' rules name (their old and new versions): a
numeric port or a range's first port; a rule with a protocol but no port is probed on a
port no rule names; a rule naming no protocol, with TCP on such a port and with ICMP. One
IP family per pair: IPv4 where both ends have it, else IPv6. Ends outside every workload
(externals, hosts) are not probed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from calico.calc.messages import WorkloadEndpointID
from calico.ctl.trace_source import Snapshot, end_of, rules_settings
from calico.datastore.client import ResourceClient
from calico.model.base import Resource
from calico.model.endpoints import WorkloadEndpoint
from calico.model.keys import key_of
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy, Profile
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
    """The reachability changes between the workload endpoints both snapshots hold."""
    before = Snapshot.load(client)
    after = changed(resources, delete, before)
    involved = [*_rule_sets(resources), *_rule_sets(_replaced(before, resources))]
    if not involved:
        return Outcome([], 0, 0)
    wanted = probes(involved)
    common = _common_workloads(before, after)
    hosts = sorted({w.spec.node for w in common.values() if w.spec.node})
    sides = [_side(client, snap, hosts) for snap in (before, after)]
    group = len(common) > GROUP_ABOVE
    classes = _classes(common.values(), _cidrs(before, after))
    changes: set[Change] = set()
    compared = traced = 0
    for src_class in classes:
        for dst_class in classes:
            pairs = [(s, d) for s in src_class for d in dst_class if s is not d]
            if not pairs:
                continue
            src, dst = pairs[0]
            version = _family(src, dst)
            if version is None:
                continue
            a, b = (_end(w, version) for w in (src, dst))
            for probe in wanted:
                flow = _flow(a, b, probe, version)
                try:
                    verdicts = [trace_rendered(h, r[version], flow).verdict for h, r in sides]
                except ValueError as exc:  # the walk refuses what it cannot model
                    what = f"{_text(src)} → {_text(dst)} {probe.describe(version)}"
                    raise PreviewError(f"cannot preview {what}: {exc}") from None
                traced += 1
                compared += len(pairs)
                if verdicts[0] == verdicts[1]:
                    continue
                word = "newly allowed" if verdicts[1] == "allow" else "newly denied"
                name = _label_set if group else _text
                changes |= {
                    Change(word, name(s), name(d), probe.describe(version)) for s, d in pairs
                }
    return Outcome(sorted(changes), compared, traced)


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
    client: ResourceClient, snapshot: Snapshot, hosts: Sequence[str]
) -> tuple[dict[str, HostInput], dict[int, dict[str, HostTables]]]:
    inputs = {
        h: HostInput(snapshot.host_state(h), rules_settings(client, h), snapshot.uplink(h))
        for h in hosts
    }
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


def _family(src: WorkloadEndpoint, dst: WorkloadEndpoint) -> int | None:
    def versions(w: WorkloadEndpoint) -> set[int]:
        return {ipaddress.ip_network(str(n), strict=False).version for n in w.spec.ipNetworks or ()}

    both = versions(src) & versions(dst)
    return 4 if 4 in both else 6 if 6 in both else None


def _end(w: WorkloadEndpoint, version: int) -> End:
    nets = [ipaddress.ip_network(str(n), strict=False) for n in w.spec.ipNetworks or ()]
    return end_of(w, str(next(n.network_address for n in nets if n.version == version)))


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
