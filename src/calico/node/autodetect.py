"""The node's address: calico/node's IP autodetection methods, with Calico's semantics.

- Interfaces are visited in *reverse* interface-index order (calico/node does this "to maintain
  behaviour with older versions"), addresses in the kernel's order; the first global unicast
  address of the IP version wins (Go's IsGlobalUnicast: not loopback, link-local, multicast,
  unspecified or the IPv4 broadcast address). The result keeps the interface's prefix length.
- `first-found` skips `DEFAULT_EXCLUDES`; `skip-interface=` skips those and the given regexes;
  `interface=` keeps only interfaces matching a given regex (and skips nothing else); `cidr=`
  keeps only addresses inside a given CIDR (on any interface). Regexes are unanchored searches
  of the interface name, as Go's MatchString.
- `can-reach=DEST`: the source address the kernel picks for DEST, by connect() on a UDP socket
  (no packet is sent) and getsockname(), reported with the prefix of the interface address it
  equals (any interface).

`host_addresses` reads this network namespace's addresses over netlink (pyroute2).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute

from calico.node.config import CAN_REACH, CIDR, INTERFACE, SKIP_INTERFACE, AutodetectMethod

# calico/node's default skip list for first-found and skip-interface (autodetection_linux.go).
DEFAULT_EXCLUDES = (
    r"^docker.*",
    r"^cbr.*",
    r"^dummy.*",
    r"^virbr.*",
    r"^lxcbr.*",
    r"^veth.*",
    r"^lo",
    r"^cali.*",
    r"^tunl.*",
    r"^flannel.*",
    r"^kube-ipvs.*",
    r"^cni.*",
    r"^vxlan\.calico.*",
    r"^vxlan-v6\.calico.*",
    r"^wireguard\.cali.*",
    r"^wg-v6\.cali.*",
    r"^nodelocaldns.*",
)


class AutodetectError(RuntimeError):
    """No address could be detected; the message says why."""


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    ifname: str
    index: int  # interface index: calico/node visits interfaces from the highest down
    cidr: str  # address with the interface's prefix length


def _global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def filtered(
    addresses: Iterable[InterfaceAddress],
    version: int,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    cidrs: Sequence[str] = (),
) -> InterfaceAddress | None:
    """calico/node's FilteredEnumeration: the first usable address, or None."""
    incl = re.compile("|".join(f"({r})" for r in include)) if include else None
    excl = re.compile("|".join(f"({r})" for r in exclude)) if exclude else None
    nets = [ipaddress.ip_network(c) for c in cidrs]
    in_order = sorted(addresses, key=lambda a: -a.index)  # stable: kernel order within one
    for addr in in_order:
        if incl is not None and not incl.search(addr.ifname):
            continue
        if excl is not None and excl.search(addr.ifname):
            continue
        ip = ipaddress.ip_interface(addr.cidr).ip
        if ip.version != version or not _global_unicast(ip):
            continue
        if nets and not any(ip in net for net in nets):
            continue
        return addr
    return None


def detect(
    method: AutodetectMethod,
    version: int,
    addresses: Callable[[], Sequence[InterfaceAddress]],
    reach: Callable[[str, int], str] | None = None,
) -> str:
    """The address `method` picks ("a.b.c.d/len"); raises AutodetectError if none."""
    if method.kind == CAN_REACH:
        dest = method.args[0]
        source = (reach or reach_source)(dest, version)
        local = local_prefix(source, addresses())
        if local is None:
            raise AutodetectError(
                f"the address {source} used to reach {dest} is on no local interface"
            )
        return local
    if method.kind == INTERFACE:
        found = filtered(addresses(), version, include=method.args)
    elif method.kind == SKIP_INTERFACE:
        found = filtered(addresses(), version, exclude=(*DEFAULT_EXCLUDES, *method.args))
    elif method.kind == CIDR:
        found = filtered(addresses(), version, cidrs=method.args)
    else:
        found = filtered(addresses(), version, exclude=DEFAULT_EXCLUDES)
    if found is None:
        raise AutodetectError(f"no global IPv{version} address on a matching interface")
    return str(ipaddress.ip_interface(found.cidr))


def local_prefix(ip: str, addresses: Iterable[InterfaceAddress]) -> str | None:
    """The interface address equal to `ip`, with its prefix length (calico/node's
    GetLocalCIDR, used when IP is given without one), or None."""
    wanted = ipaddress.ip_address(ip)
    for addr in addresses:
        if ipaddress.ip_interface(addr.cidr).ip == wanted:
            return str(ipaddress.ip_interface(addr.cidr))
    return None


def reach_source(dest: str, version: int) -> str:
    """The source address the kernel would use towards `dest` (an address or a host name)."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        infos = socket.getaddrinfo(dest, 80, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise AutodetectError(
            f"cannot resolve {dest!r} to an IPv{version} address: {exc}"
        ) from None
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(infos[0][4])  # UDP connect: a route lookup, nothing is sent
        except OSError as exc:
            raise AutodetectError(f"no route to {dest}: {exc.strerror}") from None
        return str(sock.getsockname()[0]).split("%")[0]


def host_addresses() -> list[InterfaceAddress]:
    """This network namespace's interface addresses, in interface-index and kernel order."""
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        out = []
        for msg in ipr.get_addr():
            local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            index = msg["index"]
            if local and index in names:
                out.append(InterfaceAddress(names[index], index, f"{local}/{msg['prefixlen']}"))
    return sorted(out, key=lambda a: a.index)
