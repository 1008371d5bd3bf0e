"""What the calculation needs from each labelled resource (pure).

Endpoints and network sets are "items": they carry labels (their own plus those inherited
from profiles), addresses that IP sets are built from, and named ports. Profiles are
"parents": their `labelsToApply` are inherited by the items that list them. Namespaced
network sets inherit from their namespace's `kns.<ns>` profile, as in Calico.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from calico.calc.selectors import NAMESPACE_PROFILE_PREFIX
from calico.model.base import Resource
from calico.model.endpoints import LABEL_NAMESPACE, HostEndpoint, WorkloadEndpoint
from calico.model.fields import plain_cidr
from calico.model.policy import GlobalNetworkSet, NetworkSet

_PORT_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", 6: "tcp", 17: "udp", 132: "sctp"}


class ItemKey(NamedTuple):
    """An item's identity. A NamedTuple, as it is hashed at every step of the label and IP
    set indexes (dozens of times per item): tuples hash in C, dataclasses in Python."""

    kind: str  # "wep", "hep", "netset", "gns"
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    protocol: str  # tcp, udp, sctp
    port: int


@dataclass(frozen=True, slots=True)
class Item:
    labels: Mapping[str, str] = field(hash=False)
    parents: tuple[str, ...]
    nets: tuple[str, ...]  # normalised CIDRs, /32 and /128 for endpoint addresses
    ports: tuple[NamedPort, ...] = ()


def port_protocol(protocol: int | str | None) -> str | None:
    """Calico protocol (name or number) -> the ipset hash:ip,port protocol name."""
    return _PORT_PROTOCOLS.get(protocol) if protocol is not None else None


def normalise_cidr(text: str) -> str:
    """The CIDR as ipaddress prints it, host bits cleared; a bare address becomes a /32 or
    /128. A single address in plain form (endpoints' ipNetworks, the common case) is not
    parsed again, and a plain IPv4 one is printed as it is written."""
    plain = plain_cidr(text)
    if plain is not None:
        version, value, prefix = plain
        if version == 4 and prefix == 32:
            return text if "/" in text else f"{text}/32"
        if version == 6 and prefix == 128:
            return f"{ipaddress.IPv6Address(value)}/128"
    return str(ipaddress.ip_network(text, strict=False))


def item_from(resource: Resource) -> Item | None:
    """The item view of an endpoint or network set; None for other kinds."""
    labels = dict(resource.metadata.labels or {})
    if isinstance(resource, WorkloadEndpoint):
        spec = resource.spec
        nets = tuple(normalise_cidr(n) for n in spec.ipNetworks or [])
        ports = tuple(
            NamedPort(p.name, proto, p.port)
            for p in spec.ports or []
            if p.name and (proto := port_protocol(p.protocol)) is not None
        )
        return Item(labels, tuple(spec.profiles or ()), nets, ports)
    if isinstance(resource, HostEndpoint):
        hspec = resource.spec
        nets = tuple(normalise_cidr(ip) for ip in hspec.expectedIPs or [])
        ports = tuple(
            NamedPort(p.name, proto, p.port)
            for p in hspec.ports or []
            if (proto := port_protocol(p.protocol)) is not None
        )
        return Item(labels, tuple(hspec.profiles or ()), nets, ports)
    if isinstance(resource, NetworkSet):
        labels[LABEL_NAMESPACE] = resource.namespace or "default"
        nets = tuple(normalise_cidr(n) for n in resource.spec.nets or [])
        return Item(labels, (NAMESPACE_PROFILE_PREFIX + labels[LABEL_NAMESPACE],), nets)
    if isinstance(resource, GlobalNetworkSet):
        return Item(labels, (), tuple(normalise_cidr(n) for n in resource.spec.nets or []))
    return None


def effective_labels(item: Item, profile_labels: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Own labels over inherited ones; among profiles the first listed wins (Calico)."""
    merged: dict[str, str] = {}
    for parent in reversed(item.parents):
        merged.update(profile_labels.get(parent, {}))
    merged.update(item.labels)
    return merged
