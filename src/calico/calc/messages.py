"""The calculation -> dataplane contract (Calico's felix/proto ToDataplane messages).

Everything here is a frozen, slotted dataclass of plain values, so messages can be
compared in tests, logged, and handed between threads without copies. The calculation
graph emits them in dependency order (see `EventSequencer`): IP sets before the policies
and profiles that use them, those before the endpoints that reference them; removals in
the reverse order. The dataplane may rely on that order within one flush.

Conventions:
- IP set IDs are family-agnostic ("s:<hash>" selector sets, "net:<hash>" CIDR-list sets,
  "n:<hash>" named-port sets); members carry both IPv4 and IPv6 entries and the dataplane
  programs one kernel set per family.
- hash:net members are CIDRs ("10.0.0.1/32", "2001:db8::/64"); hash:ip,port members are
  "<ip>,<proto>:<port>" with proto tcp, udp or sctp ("10.0.0.1,tcp:8080").
- A rule's positive IP sets must all match, negative ones must all not match; lists of
  ports are ORed; `ip_version` None means both families.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class IPSetType(enum.Enum):
    NET = "hash:net"
    IP_PORT = "hash:ip,port"


class Action(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    LOG = "log"
    PASS = "pass"


@dataclass(frozen=True, slots=True)
class PortRange:
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class ICMPMatch:
    type: int
    code: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedRule:
    """One policy/profile rule with selectors and CIDR lists resolved to IP set IDs."""

    action: Action
    ip_version: int | None = None  # 4, 6 or None (both)
    protocol: int | str | None = None  # Calico name ("TCP", "ICMPv6"...) or number
    not_protocol: int | str | None = None
    src_ipset_ids: tuple[str, ...] = ()
    not_src_ipset_ids: tuple[str, ...] = ()
    src_ports: tuple[PortRange, ...] = ()
    not_src_ports: tuple[PortRange, ...] = ()
    src_named_port_ipset_ids: tuple[str, ...] = ()
    not_src_named_port_ipset_ids: tuple[str, ...] = ()
    dst_ipset_ids: tuple[str, ...] = ()
    not_dst_ipset_ids: tuple[str, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    dst_named_port_ipset_ids: tuple[str, ...] = ()
    not_dst_named_port_ipset_ids: tuple[str, ...] = ()
    icmp: ICMPMatch | None = None
    not_icmp: ICMPMatch | None = None


@dataclass(frozen=True, slots=True)
class PolicyID:
    tier: str
    name: str  # as in the datastore, e.g. "security.allow-web"
    namespace: str | None = None  # set for NetworkPolicy


@dataclass(frozen=True, slots=True)
class ParsedPolicy:
    inbound_rules: tuple[ParsedRule, ...] = ()
    outbound_rules: tuple[ParsedRule, ...] = ()
    untracked: bool = False  # doNotTrack
    pre_dnat: bool = False
    apply_on_forward: bool = False


@dataclass(frozen=True, slots=True)
class ParsedProfile:
    inbound_rules: tuple[ParsedRule, ...] = ()
    outbound_rules: tuple[ParsedRule, ...] = ()


@dataclass(frozen=True, slots=True)
class TierInfo:
    """A tier as it applies to one endpoint: its policies per direction, in order. For a
    workload endpoint, also each policy's selection (the unique ID of the selector that
    decides which endpoints it applies to), so that the policies sharing one can share a
    chain (rules/endpoints.py); empty where they cannot."""

    name: str
    default_action: Action = Action.DENY  # DENY or PASS at the end of the tier
    ingress_policies: tuple[PolicyID, ...] = ()
    egress_policies: tuple[PolicyID, ...] = ()
    ingress_selections: tuple[str, ...] = ()  # empty, or one per ingress policy
    egress_selections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkloadEndpointID:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class HostEndpointID:
    name: str


@dataclass(frozen=True, slots=True)
class NatMapping:
    internal_ip: str
    external_ip: str


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    interface_name: str
    mac: str | None
    ipv4_nets: tuple[str, ...]  # single addresses as CIDRs: "10.0.0.1/32"
    ipv6_nets: tuple[str, ...]
    profile_ids: tuple[str, ...]
    tiers: tuple[TierInfo, ...]
    ipv4_nats: tuple[NatMapping, ...] = ()
    ipv6_nats: tuple[NatMapping, ...] = ()
    allow_spoofed_source_prefixes: tuple[str, ...] = ()
    # Calico's status-key identity (orchestrator/workload/endpoint), for status reporting.
    orchestrator: str = ""
    workload: str = ""
    endpoint: str = ""


@dataclass(frozen=True, slots=True)
class HostEndpoint:
    interface_name: str | None  # None: resolve from expected IPs; "*": all interfaces
    expected_ipv4_addrs: tuple[str, ...]
    expected_ipv6_addrs: tuple[str, ...]
    profile_ids: tuple[str, ...]
    tiers: tuple[TierInfo, ...]  # normal (filter table) policies
    untracked_tiers: tuple[TierInfo, ...] = ()
    pre_dnat_tiers: tuple[TierInfo, ...] = ()
    forward_tiers: tuple[TierInfo, ...] = ()


# --- the messages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InSync:
    """The datastore snapshot has been fully processed; the dataplane may now apply."""


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """The effective Felix configuration (flattened name -> value strings)."""

    config: dict[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class IPSetUpdate:
    """Full membership of a set (sent when a set becomes active)."""

    id: str
    type: IPSetType
    members: frozenset[str]


@dataclass(frozen=True, slots=True)
class IPSetDeltaUpdate:
    id: str
    added: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True, slots=True)
class IPSetRemove:
    id: str


@dataclass(frozen=True, slots=True)
class ActivePolicyUpdate:
    id: PolicyID
    policy: ParsedPolicy


@dataclass(frozen=True, slots=True)
class ActivePolicyRemove:
    id: PolicyID


@dataclass(frozen=True, slots=True)
class ActiveProfileUpdate:
    id: str
    profile: ParsedProfile


@dataclass(frozen=True, slots=True)
class ActiveProfileRemove:
    id: str


@dataclass(frozen=True, slots=True)
class WorkloadEndpointUpdate:
    id: WorkloadEndpointID
    endpoint: WorkloadEndpoint


@dataclass(frozen=True, slots=True)
class WorkloadEndpointRemove:
    id: WorkloadEndpointID


@dataclass(frozen=True, slots=True)
class HostEndpointUpdate:
    id: HostEndpointID
    endpoint: HostEndpoint


@dataclass(frozen=True, slots=True)
class HostEndpointRemove:
    id: HostEndpointID


@dataclass(frozen=True, slots=True)
class IPAMPool:
    cidr: str
    masquerade: bool  # natOutgoing


@dataclass(frozen=True, slots=True)
class IPAMPoolUpdate:
    """An IP pool (any family), keyed by the IPPool's name; the dataplane builds the pool
    IP sets and natOutgoing rules from these (Felix's proto.IPAMPoolUpdate)."""

    id: str
    pool: IPAMPool


@dataclass(frozen=True, slots=True)
class IPAMPoolRemove:
    id: str


@dataclass(frozen=True, slots=True)
class VTEPUpdate:
    """A host's VXLAN tunnel endpoint for one IP family (Calico's
    VXLANTunnelEndpointUpdate). Sent for every host with a tunnel address in that family,
    this host included: the dataplane configures its own `vxlan.calico` /
    `vxlan-v6.calico` device from its own VTEP and programs neighbour + FDB entries for the
    others."""

    node: str
    ip_version: int  # 4 or 6
    tunnel_addr: str  # address on the VXLAN device, e.g. "198.19.0.1"
    mac: str  # the device's MAC, "66:xx:xx:xx:xx:xx" (calico.model.vxlan.vtep_mac)
    parent_ip: str  # host address the encapsulated packets are sent to / from


@dataclass(frozen=True, slots=True)
class VTEPRemove:
    node: str
    ip_version: int


class RouteType(enum.Enum):
    VXLAN = "vxlan"  # via the remote VTEP's tunnel address on the VXLAN device, onlink
    DIRECT = "direct"  # CrossSubnet, same subnet: via the remote host's address, no encap
    BLACKHOLE = "blackhole"  # this host's own affine block in a VXLAN pool


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    """A route to an IPAM block in a VXLAN pool, or to a remote endpoint's address outside
    its host's blocks (Calico's RouteUpdate, resolved): keyed by `dst`. `next_hop` is the
    remote tunnel address (VXLAN), the remote host's address (DIRECT) or "" (BLACKHOLE, own
    blocks only). Sent after the VTEP it goes through."""

    dst: str  # block CIDR, or the endpoint's /32 (/128)
    node: str  # the block's affine host, or the endpoint's host
    type: RouteType
    next_hop: str


@dataclass(frozen=True, slots=True)
class RouteRemove:
    dst: str


Message = (
    InSync
    | ConfigUpdate
    | IPSetUpdate
    | IPSetDeltaUpdate
    | IPSetRemove
    | ActivePolicyUpdate
    | ActivePolicyRemove
    | ActiveProfileUpdate
    | ActiveProfileRemove
    | WorkloadEndpointUpdate
    | WorkloadEndpointRemove
    | HostEndpointUpdate
    | HostEndpointRemove
    | IPAMPoolUpdate
    | IPAMPoolRemove
    | VTEPUpdate
    | VTEPRemove
    | RouteUpdate
    | RouteRemove
)
