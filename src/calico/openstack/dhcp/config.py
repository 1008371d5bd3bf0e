"""What dnsmasq must do on this host, from endpoints and subnets (pure).

As networking-calico's DHCP agent: one dnsmasq per Neutron network that has a port on this
host. Each runs in the host's namespace and serves the network's VM taps as aliases of one
interface `ns-<network_id[:11]>` (`--bridge-interface=ns-X,tapA,tapB`) that carries the
gateway address of each of the network's subnets in use here, so dnsmasq answers a request on
any of those taps as if it had arrived on a link with those subnets. Only static leases are
served: one `dhcp-host` entry per port address (MAC -> IP, hostname), nothing dynamic.

Inputs: the subnet data the Neutron driver writes under `/calico/dhcp/v2/<region>/subnet/`
(JSON {network_id, cidr, gateway_ip, host_routes, dns_servers, ipv6_address_mode,
ipv6_ra_mode}) and this host's OpenStack WorkloadEndpoints (mac, ipNetworks, interfaceName,
endpoint = port ID, annotations network-id and fqdn). Only a port's fixed IPs are served
(allowed-address pairs are not; `translate.endpoint_fixed_ips`), each matched to a subnet by
CIDR, within the port's network when the annotation names it.

IPv6: every range is `off-link` (Calico networks are routed: a VM must send everything to its
router, never expect a neighbour on the link) and dnsmasq sends RAs (`--enable-ra`). The
address mode picks the RA flags: slaac -> `ra-only` (A flag, the VM builds its EUI-64 address
from its MAC, as Neutron computes it), dhcpv6-stateless -> `ra-stateless` (A and O flags),
dhcpv6-stateful or unset -> `static` (M flag, the address from the hosts file).

DNS is off (`--port=0`): VMs get the subnet's dns_servers as options, dnsmasq answers no
queries.

MTU, as networking-calico: each port's DHCPv4 requests are tagged `port-<tap>` (by MAC) and
get the tap's MTU as option 26 (`mtu`) once the tap exists; RAs carry no MTU (`mtu:off`), since they
go out as the ns- interface's.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from calico.model.endpoints import WorkloadEndpoint
from calico.openstack import keys
from calico.openstack.translate import (
    FQDN_ANNOTATION,
    NETWORK_ID_ANNOTATION,
    endpoint_fixed_ips,
)

DEFAULT_NETWORK_ID = "calico"  # networking-calico's network for subnet data without one
NS_PREFIX = "ns-"
DEFAULT_LEASE_SECONDS = 86400
MAX_LEASES = 2**24  # Neutron's dnsmasq_lease_max

SLAAC = "slaac"
DHCPV6_STATELESS = "dhcpv6-stateless"
DHCPV6_STATEFUL = "dhcpv6-stateful"
_IPV6_MODES = (SLAAC, DHCPV6_STATELESS, DHCPV6_STATEFUL)
_RANGE_MODE = {SLAAC: "ra-only", DHCPV6_STATELESS: "ra-stateless", DHCPV6_STATEFUL: "static"}

# A network ID names a directory and part of an interface name and sits inside dnsmasq's
# comma-separated options: only UUID-like characters.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    network_id: str
    cidr: IPNetwork
    gateway_ip: str | None
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, nexthop)
    dns_servers: tuple[str, ...] = ()
    ipv6_address_mode: str | None = None
    ipv6_ra_mode: str | None = None

    @property
    def version(self) -> int:
        return self.cidr.version

    @property
    def ipv6_mode(self) -> str:
        """How VMs get addresses; Neutron's address mode, else its RA mode, else stateful
        (networking-calico's default)."""
        return self.ipv6_address_mode or self.ipv6_ra_mode or DHCPV6_STATEFUL

    @property
    def tag(self) -> str:
        return f"subnet-{self.id}"

    def unusable(self) -> str | None:
        """Why dnsmasq cannot serve this subnet, or None."""
        if not self.gateway_ip:
            return "has no gateway_ip for the ns- interface to carry"
        if ipaddress.ip_address(self.gateway_ip) not in self.cidr:
            return f"gateway_ip {self.gateway_ip} is outside {self.cidr}"
        if self.version == 6:
            if self.cidr.prefixlen < 64:
                return f"{self.cidr}: IPv6 prefixes shorter than /64 are not served"
            if self.ipv6_mode != DHCPV6_STATEFUL and self.cidr.prefixlen != 64:
                return f"{self.cidr}: {self.ipv6_mode} needs a /64"
        return None


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what}: {value!r} is not an IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IP address") from None


def parse_subnet(subnet_id: str, value: bytes) -> Subnet:
    """The Neutron driver's subnet JSON; ValueError says what is wrong with it."""
    if not _SAFE_ID.match(subnet_id):
        raise ValueError(f"subnet ID {subnet_id!r} is not a plain identifier")
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if "cidr" not in data or "gateway_ip" not in data:
        raise ValueError("cidr and gateway_ip are required")
    try:
        cidr = ipaddress.ip_network(str(data["cidr"]), strict=False)
    except ValueError:
        raise ValueError(f"cidr {data['cidr']!r} is not a CIDR") from None
    network_id = data.get("network_id") or DEFAULT_NETWORK_ID
    if not isinstance(network_id, str) or not _SAFE_ID.match(network_id):
        raise ValueError(f"network_id {network_id!r} is not a plain identifier")
    gateway = data["gateway_ip"]
    gateway_ip = _address(gateway, "gateway_ip") if gateway else None
    if gateway_ip and ipaddress.ip_address(gateway_ip).version != cidr.version:
        raise ValueError(f"gateway_ip {gateway_ip} is not in the family of {cidr}")
    routes = []
    for route in data.get("host_routes") or []:
        if not isinstance(route, dict):
            raise ValueError(f"host route {route!r} is not an object")
        try:
            dest = ipaddress.ip_network(str(route.get("destination")), strict=False)
        except ValueError:
            raise ValueError(f"host route destination {route.get('destination')!r}") from None
        routes.append((str(dest), _address(route.get("nexthop"), "host route nexthop")))
    servers = data.get("dns_servers") or []
    if not isinstance(servers, list):
        raise ValueError("dns_servers is not a list")
    modes = []
    for name in ("ipv6_address_mode", "ipv6_ra_mode"):
        mode = data.get(name) or None
        if mode is not None and mode not in _IPV6_MODES:
            raise ValueError(f"{name} {mode!r} is not one of {', '.join(_IPV6_MODES)}")
        modes.append(mode)
    return Subnet(
        id=subnet_id,
        network_id=network_id,
        cidr=cidr,
        gateway_ip=gateway_ip,
        host_routes=tuple(routes),
        dns_servers=tuple(_address(s, "dns_servers") for s in servers),
        ipv6_address_mode=modes[0],
        ipv6_ra_mode=modes[1],
    )


@dataclass(frozen=True, slots=True)
class Port:
    id: str  # the Neutron port ID (the endpoint's spec.endpoint)
    interface: str  # tap<port_id[:11]>
    mac: str
    ips: tuple[str, ...]  # the fixed IPs, bare, in ipNetworks order
    network_id: str | None = None
    fqdn: str | None = None


def port_from_endpoint(wep: WorkloadEndpoint) -> Port | None:
    """The DHCP view of a port's endpoint; None if there is nothing to serve (no tap, MAC or
    fixed IP), which networking-calico treats as the port's removal. Allowed-address-pair
    addresses are never handed out (the driver lists them in allowedIps)."""
    spec = wep.spec
    iface = spec.interfaceName or ""
    ips = endpoint_fixed_ips(wep)
    if not (iface.startswith(keys.INTERFACE_PREFIX) and spec.mac and ips):
        return None
    annotations = wep.metadata.annotations or {}
    return Port(
        id=spec.endpoint or wep.name,
        interface=iface,
        mac=spec.mac.lower(),
        ips=tuple(ips),
        network_id=annotations.get(NETWORK_ID_ANNOTATION) or None,
        fqdn=annotations.get(FQDN_ANNOTATION) or None,
    )


@dataclass(frozen=True, slots=True)
class NetworkFiles:
    """Where one network's dnsmasq keeps its files: <base>/<network_id>/."""

    directory: str

    @property
    def pid(self) -> str:
        return str(PurePosixPath(self.directory, "pid"))

    @property
    def hosts(self) -> str:
        return str(PurePosixPath(self.directory, "host"))

    @property
    def opts(self) -> str:
        return str(PurePosixPath(self.directory, "opts"))

    @property
    def leases(self) -> str:
        return str(PurePosixPath(self.directory, "leases"))


def network_files(base_dir: str, network_id: str) -> NetworkFiles:
    return NetworkFiles(str(PurePosixPath(base_dir, network_id)))


def interface_name(network_id: str) -> str:
    return NS_PREFIX + network_id[:11]


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    network_id: str
    interface: str  # the ns- interface
    addresses: tuple[tuple[str, int], ...]  # (gateway IP, prefix length) on the ns- interface
    taps: tuple[str, ...]
    args: tuple[str, ...]  # dnsmasq's arguments (without the program): a change = restart
    hosts: str  # --dhcp-hostsfile text: a change = SIGHUP
    opts: str  # --dhcp-optsfile text: a change = SIGHUP
    files: NetworkFiles


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How every dnsmasq runs; the Neutron DHCP agent options it follows are named."""

    base_dir: str  # <CALICO_RUN_DIR>/dhcp
    lease_seconds: int = DEFAULT_LEASE_SECONDS  # dhcp_lease_duration; -1: infinite
    log_dhcp: bool = False
    domain: str | None = None  # dns_domain (dhcp_domain)
    broadcast: bool = False  # dhcp_broadcast_reply
    lease_max: int = MAX_LEASES  # dnsmasq_lease_max
    conf_file: str = ""  # dnsmasq_config_file
    renewal_seconds: int = 0  # dhcp_renewal_time (DHCP option T1); 0: dnsmasq's
    rebinding_seconds: int = 0  # dhcp_rebinding_time (T2); 0: dnsmasq's


@dataclass(frozen=True, slots=True)
class Rendered:
    networks: dict[str, NetworkConfig]
    problems: tuple[str, ...]  # what could not be served, and why (for the log)


def _subnet_for(ip: IPAddress, network_id: str | None, subnets: Iterable[Subnet]) -> Subnet | None:
    for subnet in subnets:
        if network_id and subnet.network_id != network_id:
            continue
        if ip in subnet.cidr:
            return subnet
    return None


def _hostname(port: Port, ip: IPAddress) -> str:
    """The FQDN's first label if it is a valid host name, else Neutron's `host-<ip>`."""
    if port.fqdn:
        label = port.fqdn.rstrip(".").split(".")[0]
        if _HOST_LABEL.match(label):
            return label
    return "host-" + str(ip).replace(".", "-").replace(":", "-")


def render(
    ports: Iterable[Port],
    subnets: Mapping[str, Subnet],
    options: RenderOptions,
    mtus: Mapping[str, int] | None = None,
) -> Rendered:
    """`mtus`: the MTU of each tap present (by name); a port whose tap has none is served
    without an MTU option."""
    problems: list[str] = []
    ordered = sorted(subnets.values(), key=lambda s: (s.version, s.id))
    usable = []
    for subnet in ordered:
        reason = subnet.unusable()
        if reason:
            problems.append(f"subnet {subnet.id}: {reason}")
        else:
            usable.append(subnet)
    served_by_network: dict[str, list[tuple[Port, list[tuple[IPAddress, Subnet]]]]] = {}
    for port in sorted(ports, key=lambda p: p.id):
        served: list[tuple[IPAddress, Subnet]] = []
        for text in port.ips:
            ip = ipaddress.ip_address(text)
            match = _subnet_for(ip, port.network_id, usable)
            if match is None:
                problems.append(f"port {port.id}: no DHCP subnet serves {ip}")
                continue
            if any(s.id == match.id for _, s in served):
                continue  # dnsmasq can pin one address per MAC and subnet: the first
            if served and match.network_id != served[0][1].network_id:
                problems.append(f"port {port.id}: {ip} is in another network's subnet")
                continue
            served.append((ip, match))
        if served:
            served_by_network.setdefault(served[0][1].network_id, []).append((port, served))
    networks: dict[str, NetworkConfig] = {}
    owners: dict[str, str] = {}  # ns- interface -> network ID
    for network_id, members in sorted(served_by_network.items()):
        iface = interface_name(network_id)
        if iface in owners:
            # Only 11 characters of the ID fit in the name; a clash is all but impossible
            # with UUIDs, but must not make two dnsmasqs share an interface.
            problems.append(
                f"network {network_id}: interface {iface} is taken by network {owners[iface]}"
            )
            continue
        owners[iface] = network_id
        networks[network_id] = _render_network(network_id, members, options, mtus or {})
    return Rendered(networks, tuple(problems))


def _render_network(
    network_id: str,
    members: list[tuple[Port, list[tuple[IPAddress, Subnet]]]],
    options: RenderOptions,
    mtus: Mapping[str, int],
) -> NetworkConfig:
    iface = interface_name(network_id)
    files = network_files(options.base_dir, network_id)
    used = {s.id: s for _, served in members for _, s in served}
    subnets = sorted(used.values(), key=lambda s: (s.version, s.id))
    taps = tuple(sorted({port.interface for port, _ in members}))
    args = [
        "--keep-in-foreground",
        f"--conf-file={options.conf_file or '/dev/null'}",
        "--port=0",
        "--no-hosts",
        "--no-resolv",
        "--except-interface=lo",
        "--bind-dynamic",
        f"--pid-file={files.pid}",
        f"--dhcp-hostsfile={files.hosts}",
        f"--dhcp-optsfile={files.opts}",
        f"--dhcp-leasefile={files.leases}",
        "--dhcp-authoritative",
        "--log-facility=-",
        f"--interface={iface}",
        *(f"--interface={tap}" for tap in taps),
        f"--bridge-interface={','.join((iface, *taps))}",
    ]
    args += [
        f"--dhcp-mac=set:{_port_tag(port)},{port.mac}"
        for port, served in members
        if any(subnet.version == 4 for _, subnet in served)
    ]
    lease = "infinite" if options.lease_seconds == -1 else f"{options.lease_seconds}s"
    for subnet in subnets:
        net = subnet.cidr
        if subnet.version == 4:
            args.append(
                f"--dhcp-range=set:{subnet.tag},{net.network_address},static,{net.netmask},{lease}"
            )
        else:
            mode = _RANGE_MODE[subnet.ipv6_mode]
            args.append(
                f"--dhcp-range=set:{subnet.tag},{net.network_address},{mode},off-link,"
                f"{net.prefixlen},{lease}"
            )
    if any(s.version == 6 for s in subnets):
        # RAs go out as the ns- interface's, whose MTU is not the taps': advertise none, as
        # networking-calico.
        args += ["--enable-ra", f"--ra-param={iface},mtu:off,0"]
    possible = sum(s.cidr.num_addresses for s in subnets)
    args.append(f"--dhcp-lease-max={min(options.lease_max, possible)}")
    if options.renewal_seconds:
        args.append(f"--dhcp-option-force=option:T1,{options.renewal_seconds}")
    if options.rebinding_seconds:
        args.append(f"--dhcp-option-force=option:T2,{options.rebinding_seconds}")
    if options.domain:
        args.append(f"--domain={options.domain}")
    if options.broadcast:
        args.append("--dhcp-broadcast")
    if options.log_dhcp:
        args.append("--log-dhcp")
    return NetworkConfig(
        network_id=network_id,
        interface=iface,
        addresses=tuple((str(s.gateway_ip), s.cidr.prefixlen) for s in subnets),
        taps=taps,
        args=tuple(args),
        hosts=_hosts_file(members),
        opts=_opts_file(subnets, members, mtus),
        files=files,
    )


def _port_tag(port: Port) -> str:
    """The dnsmasq tag of a port's DHCPv4 requests (its tap's name is unique on the host and
    a safe token, unlike the port ID, which is any string). It is set by MAC on the command
    line: dnsmasq 2.90 crashes on the first request after a SIGHUP when a --dhcp-hostsfile
    line sets a tag."""
    return f"port-{port.interface}"


def _hosts_file(members: list[tuple[Port, list[tuple[IPAddress, Subnet]]]]) -> str:
    lines = []
    for port, served in members:
        for ip, subnet in served:
            if subnet.version == 4:
                lines.append(f"{port.mac},{_hostname(port, ip)},{ip}")
            elif subnet.ipv6_mode == DHCPV6_STATEFUL:
                lines.append(f"{port.mac},{_hostname(port, ip)},[{ip}]")
            # SLAAC and stateless: the VM derives its address; no lease to pin.
    return "".join(line + "\n" for line in lines)


def _opts_file(
    subnets: list[Subnet],
    members: list[tuple[Port, list[tuple[IPAddress, Subnet]]]],
    mtus: Mapping[str, int],
) -> str:
    lines = []
    for subnet in subnets:
        tag = f"tag:{subnet.tag}"
        dns = [s for s in subnet.dns_servers if ipaddress.ip_address(s).version == subnet.version]
        if subnet.version == 4:
            lines.append(f"{tag},option:router,{subnet.gateway_ip}")
            if dns:
                lines.append(f"{tag},option:dns-server,{','.join(dns)}")
            routes = [(d, n) for d, n in subnet.host_routes if ":" not in d]
            if routes:
                # A client that gets classless routes ignores option:router (RFC 3442), so
                # the default route goes in the list too, as Neutron does.
                if not any(d == "0.0.0.0/0" for d, _ in routes):
                    routes.append(("0.0.0.0/0", str(subnet.gateway_ip)))
                flat = ",".join(f"{d},{n}" for d, n in routes)
                lines.append(f"{tag},option:classless-static-route,{flat}")
                lines.append(f"{tag},249,{flat}")  # the same for old Windows clients
        elif dns:
            lines.append(f"{tag},option6:dns-server,{','.join(f'[{s}]' for s in dns)}")
    for port, served in members:
        mtu = mtus.get(port.interface)
        if mtu is not None and any(subnet.version == 4 for _, subnet in served):
            # The tap's MTU, as networking-calico's per-port extra DHCP option (DHCPv4 only:
            # DHCPv6 has no MTU option).
            lines.append(f"tag:{_port_tag(port)},option:mtu,{mtu}")
    return "".join(line + "\n" for line in lines)
