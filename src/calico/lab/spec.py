"""The lab file: a YAML description of hosts, workloads, pools and routers (pure).

Hosts sit on a bridged `fabric`, or in `racks` (subnets): behind BGP top-of-rack routers and
spines (the L3 fabric), or joined by one plain `router` that forwards between the racks and
knows nothing of workload addresses (the topology VXLAN CrossSubnet is for).

The schema only; `calico.lab.labfile` loads a file and adds the cross-field checks. Addresses
must lie in 198.18.0.0/15 or 2001:db8::/32: lab traffic must never be routable off the
machine. See `examples/lab/` and README's lab section for the format.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from calico.model.fields import DNS_SUBDOMAIN, check_label_value, check_qualified_name

LAB_RANGES = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
_NAME = re.compile("^" + DNS_SUBDOMAIN + "$")
_LAB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?$")
_PORT = re.compile(r"^(?:(tcp|udp)/)?(\d{1,5})$")
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _in_lab_ranges(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address or CIDR") from None
    if not any(net.subnet_of(r) for r in LAB_RANGES if r.version == net.version):  # type: ignore[arg-type]
        raise ValueError(
            f"{value!r} is outside the lab's address ranges 198.18.0.0/15 and 2001:db8::/32"
        )
    return value


def _name(value: str) -> str:
    if len(value) > 63 or not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name (lower-case DNS name, <= 63 characters)")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        problem = check_qualified_name(key) or check_label_value(val)
        if problem:
            raise ValueError(problem)
    return value


def _cluster_id(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a route reflector cluster ID (an IPv4 address)"
        ) from None


def _port(value: int | str) -> str:
    match = _PORT.match(str(value))
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"{value!r} is not a port (N, tcp/N or udp/N with 1 <= N <= 65535)")
    return str(value)


Address = Annotated[str, AfterValidator(_in_lab_ranges)]
Name = Annotated[str, AfterValidator(_name)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Port = Annotated[int | str, AfterValidator(_port)]
ASN = Annotated[int, Field(ge=1, le=4294967295)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Fabric(_Model):
    ipv4: Address
    ipv6: Address | None = None


class Pool(_Model):
    name: Name | None = None
    cidr: Address
    blockSize: int | None = None
    nodeSelector: str | None = None
    assignmentMode: Literal["Automatic", "Manual"] | None = None  # Manual: only when asked for
    vxlanMode: Literal["Never", "Always", "CrossSubnet"] | None = None
    natOutgoing: bool | None = None


class Host(_Model):
    name: Name
    ipv4: Address
    ipv6: Address | None = None
    asNumber: ASN | None = None
    labels: Labels = Field(default_factory=dict)
    routeReflector: Annotated[str, AfterValidator(_cluster_id)] | None = None  # cluster ID
    rack: str | None = None  # L3 fabric: the rack the host sits in


class Tor(_Model):
    name: Name
    asNumber: ASN
    ipv4: Address | None = None  # default: the rack subnet's first usable address
    password: str | None = None  # TCP MD5 on the sessions between the ToR and its hosts
    loopback: Address | None = None  # hosts peer with this address (on the ToR's lo)
    loopback6: Address | None = None  # the same for the IPv6 sessions (the rack needs ipv6)


class Rack(_Model):
    name: Name
    subnet: Address
    ipv6: Address | None = None  # the rack's IPv6 subnet (the gateway takes its first address)
    tor: Tor | None = None  # None: behind the lab's plain router


class Router(_Model):
    """A plain IP router between the racks: forwarding on, one interface per rack (the
    rack's first addresses), no BGP, no routes to the pools."""

    name: Name = "router"


class Spine(_Model):
    name: Name
    asNumber: ASN


class Workload(_Model):
    name: Name
    host: str
    namespace: Name = "default"
    labels: Labels = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    ipPools: list[str] = Field(default_factory=list)  # pool names to take addresses from


class External(_Model):
    name: Name
    ipv4: Address | None = None
    ipv6: Address | None = None
    behind: str | None = None  # the border router's name: on the network behind it
    gateway: Address | None = None  # on the fabric: an optional IPv4 default gateway


class BorderNetwork(_Model):
    ipv4: Address | None = None
    ipv6: Address | None = None


class Border(_Model):
    """On the bridged fabric: peers with every host. In the L3 fabric: linked to every spine
    (its addresses come from `fabric`), eBGP with them."""

    name: Name = "border"
    asNumber: ASN = 65000
    ipv4: Address | None = None  # required on the bridged fabric, refused in the L3 fabric
    ipv6: Address | None = None
    network: BorderNetwork = Field(default_factory=BorderNetwork)


def _odd_members(count: int) -> int:
    if count % 2 == 0:
        raise ValueError(
            f"{count}: give an odd number (an even-sized cluster survives no more failures"
            " than one member fewer)"
        )
    return count


class Etcd(_Model):
    """One member, or a cluster of `members`; `ipv4` is the first member's address (the
    others take the next ones up); by default they take the fabric's last usable ones, down."""

    ipv4: Address | None = None
    members: Annotated[int, Field(ge=1, le=7), AfterValidator(_odd_members)] = 1
    tls: bool = False  # a CA, a server certificate and one client certificate per host


class LabSpec(_Model):
    name: Annotated[str, AfterValidator(lambda v: _check(v, _LAB_NAME, "lab name"))]
    asNumber: ASN = 64512
    mesh: bool | None = None
    networkingBackend: Literal["bird", "vxlan"] = "bird"  # calico node's CALICO_NETWORKING_BACKEND
    fabric: Fabric | None = None  # required unless racks sit behind a router
    etcd: Etcd = Field(default_factory=Etcd)
    pools: list[Pool] = Field(default_factory=list)
    hosts: list[Host] = Field(min_length=1)
    workloads: list[Workload] = Field(default_factory=list)
    externals: list[External] = Field(default_factory=list)
    border: Border | None = None
    model: Literal["as-per-rack", "as-per-host"] | None = None  # L3 fabric: racks and spines
    racks: list[Rack] = Field(default_factory=list)
    router: Router | None = None  # joins the racks instead of ToRs and spines
    spines: list[Spine] = Field(default_factory=list, max_length=2)
    resources: list[str] = Field(default_factory=list)
    base_dir: str = "."  # set by load_lab: where relative resource paths start

    @property
    def node_mesh(self) -> bool:
        bgp_fabric = bool(self.racks) and self.router is None  # the hosts peer with their ToRs
        return self.mesh if self.mesh is not None else not (self.route_reflectors or bgp_fabric)

    @property
    def bgp(self) -> bool:
        """The hosts run BIRD (the networking backend is BGP)."""
        return self.networkingBackend == "bird"

    @property
    def route_reflectors(self) -> list[Host]:
        return [h for h in self.hosts if h.routeReflector]

    def rack(self, name: str) -> Rack:
        return next(r for r in self.racks if r.name == name)

    def host_rack(self, host: Host) -> Rack:
        assert host.rack is not None
        return self.rack(host.rack)

    def host_as(self, host: Host) -> int | None:
        """The AS `calico node` gets from its environment (None: the cluster's)."""
        tor = self.host_rack(host).tor if self.model == "as-per-rack" else None
        if tor is not None:
            return tor.asNumber
        return host.asNumber

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"{value!r} is not a valid {what} (lower-case, digits, '-', <= 16)")
    return value


def fabric_interface(spec: LabSpec, address: str, version: int) -> IPIface:
    """`address` on the fabric, with the fabric's prefix length unless it carries one."""
    assert spec.fabric is not None
    fabric = spec.fabric.ipv4 if version == 4 else spec.fabric.ipv6
    assert fabric is not None
    net = ipaddress.ip_network(fabric, strict=False)
    if "/" in address:
        return ipaddress.ip_interface(address)
    return ipaddress.ip_interface(f"{address}/{net.prefixlen}")


def etcd_addresses(spec: LabSpec) -> list[str]:
    """Every member's address, the first member's first."""
    first = ipaddress.ip_address(etcd_address(spec))
    step = 1 if spec.etcd.ipv4 else -1
    return [str(first + i * step) for i in range(spec.etcd.members)]


def etcd_address(spec: LabSpec) -> str:
    """Where etcd listens (default: the last usable IPv4 address of the fabric, or with racks
    of the first rack's subnet)."""
    if spec.etcd.ipv4:
        return spec.etcd.ipv4.split("/")[0]
    where = spec.racks[0].subnet if spec.racks or spec.fabric is None else spec.fabric.ipv4
    net = ipaddress.ip_network(where, strict=False)
    return str(net.broadcast_address - 1)


def gateway_address(rack: Rack) -> str:
    """The rack's default gateway: its ToR's address, by default (and always for the plain
    router) the subnet's first usable address."""
    if rack.tor is not None and rack.tor.ipv4:
        return rack.tor.ipv4.split("/")[0]
    return str(next(ipaddress.ip_network(rack.subnet, strict=False).hosts()))


def gateway_address6(rack: Rack) -> str | None:
    """The gateway's IPv6 address on the rack: the rack's IPv6 subnet's first usable address."""
    if rack.ipv6 is None:
        return None
    return str(next(ipaddress.ip_network(rack.ipv6, strict=False).hosts()))


def tor_peer_address(rack: Rack) -> str:
    """The address the rack's hosts peer with: the ToR's loopback, else its rack address."""
    if rack.tor is not None and rack.tor.loopback:
        return rack.tor.loopback.split("/")[0]
    return gateway_address(rack)


def tor_peer_address6(rack: Rack) -> str | None:
    """The same for IPv6 (None: the rack has no ipv6)."""
    if rack.ipv6 is not None and rack.tor is not None and rack.tor.loopback6:
        return rack.tor.loopback6.split("/")[0]
    return gateway_address6(rack)


def border_networks(border: Border) -> list[IPNet]:
    """The networks behind the border router: IPv4, then IPv6."""
    nets = (border.network.ipv4, border.network.ipv6)
    return [ipaddress.ip_network(n, strict=False) for n in nets if n]


def border_gateways(border: Border) -> list[str]:
    """The border's addresses on the network behind it: the first of each, with its prefix."""
    return [f"{next(net.hosts())}/{net.prefixlen}" for net in border_networks(border)]


def bare(address: str) -> str:
    """An address without its prefix length."""
    return address.split("/")[0]


def rack_interface(rack: Rack, address: str) -> IPIface:
    """`address` in the rack's subnet of its family, with the subnet's prefix length."""
    ip = ipaddress.ip_address(address.split("/")[0])
    subnet = rack.subnet if ip.version == 4 else rack.ipv6
    assert subnet is not None
    net = ipaddress.ip_network(subnet, strict=False)
    return ipaddress.ip_interface(f"{ip}/{net.prefixlen}")


def rack_subnets(rack: Rack) -> list[IPNet]:
    """The rack's subnets: IPv4, then IPv6 if it has one."""
    return [ipaddress.ip_network(n, strict=False) for n in (rack.subnet, rack.ipv6) if n]


def rack_of(spec: LabSpec, address: str) -> Rack | None:
    """The rack whose subnet (of the address's family) holds `address`."""
    ip = ipaddress.ip_address(address.split("/")[0])
    return next((r for r in spec.racks if any(ip in n for n in rack_subnets(r))), None)


def fabric_links(spec: LabSpec, version: int = 4) -> list[tuple[Rack, Spine, str, str]]:
    """(rack, spine, ToR address, spine address): a /31 of `fabric.ipv4` per ToR-spine link,
    or for `version` 6 a /127 of `fabric.ipv6` ([] without it)."""
    pairs = [(rack, spine) for rack in spec.racks for spine in spec.spines]
    ends = _link_addresses(spec, version)[: len(pairs)]
    if not ends:
        return []
    return [(r, s, a, b) for (r, s), (a, b) in zip(pairs, ends, strict=True)]


def border_links(spec: LabSpec, version: int = 4) -> list[tuple[Spine, str, str]]:
    """(spine, border address, spine address): the L3 fabric's border router has a link to
    every spine, numbered after the ToRs' ([] without a border, or racks behind a router)."""
    if spec.border is None or not spec.spines:
        return []
    addresses = _link_addresses(spec, version)[len(spec.racks) * len(spec.spines) :]
    if not addresses:
        return []
    return [(s, a, b) for s, (a, b) in zip(spec.spines, addresses, strict=True)]


def _link_addresses(spec: LabSpec, version: int) -> list[tuple[str, str]]:
    """Both ends of each point-to-point link of the fabric (ToRs', then the border's)."""
    fabric = None if spec.fabric is None else (spec.fabric.ipv4, spec.fabric.ipv6)[version // 6]
    if fabric is None or not spec.racks:
        return []
    base = ipaddress.ip_network(fabric, strict=False).network_address
    length = 31 if version == 4 else 127
    count = (len(spec.racks) + (spec.border is not None)) * len(spec.spines)
    return [(f"{base + 2 * i}/{length}", f"{base + 2 * i + 1}/{length}") for i in range(count)]


def parse_ports(ports: list[int | str]) -> list[tuple[str, int]]:
    """`[80, "udp/53"]` -> `[("tcp", 80), ("udp", 80), ("udp", 53)]` (a bare number: both)."""
    out: list[tuple[str, int]] = []
    for item in ports:
        match = _PORT.match(str(item))
        assert match is not None
        protos = [match.group(1)] if match.group(1) else ["tcp", "udp"]
        out += [(proto, int(match.group(2))) for proto in protos]
    return out
