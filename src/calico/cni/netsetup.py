"""Veth wiring of a workload: the only module of calico.cni that touches the kernel.

The plugin runs in the host's network namespace (the runtime's). ADD creates the host side
`cali…` (MAC ee:ee:ee:ee:ee:ee) there with its peer born directly inside the container's
namespace (the CNI_NETNS path) under CNI_IFNAME, so a container-named device never appears on
the host. Container-side work runs on a short-lived thread that setns()es into CNI_NETNS:
netlink sockets and /proc/sys/net files opened on that thread belong to the container while
the rest of the process stays in the host namespace.

What gets programmed (Calico's DoNetworking): host side sysctls as Felix expects them (proxy
ARP/NDP, forwarding, route_localnet, proxy_delay 0, accept_ra 0, DAD off); in the container the
address as /32 (/128), `169.254.1.1 dev <if> scope link` and the default route via it, and for
IPv6 the default route via the host side's link-local address; on the host `<ip> dev cali…
scope link` (proto boot; Felix takes it over). Errors are `NetSetupError`; a CNI_NETNS that
does not exist is `NetnsNotFound`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from calico.cni.rtnl import RTPROT_BOOT, SCOPE_LINK, NetlinkError, Rtnl

HOST_MAC = "ee:ee:ee:ee:ee:ee"
IPV4_GATEWAY = "169.254.1.1"
_CLONE_NEWNET = 0x40000000
_LINK_LOCAL_WAIT = 2.0
T = TypeVar("T")


class NetSetupError(Exception):
    """The kernel refused a step of the wiring (the message says which)."""


class NetnsNotFound(NetSetupError):
    """CNI_NETNS does not name an existing network namespace."""


@dataclass(frozen=True, slots=True)
class VethSpec:
    netns: str  # CNI_NETNS path
    ifname: str  # container side, CNI_IFNAME
    host_ifname: str
    addresses: tuple[str, ...]  # bare IPv4/IPv6 addresses
    mtu: int = 0  # 0: kernel default
    allow_ip_forwarding: bool = False

    def family(self, version: int) -> list[str]:
        return [a for a in self.addresses if ipaddress.ip_address(a).version == version]


@dataclass(frozen=True, slots=True)
class VethInfo:
    host_ifname: str
    host_mac: str
    container_mac: str
    ipv6_gateway: str | None  # the host side's link-local address, if IPv6 is in use


class NetSetup(Protocol):
    def add(self, spec: VethSpec) -> VethInfo: ...

    def remove(self, netns: str, ifname: str) -> bool:
        """Delete `ifname` (and so its veth peer) in the namespace; False if nothing was there
        (also when the namespace itself is gone)."""
        ...

    def check(self, spec: VethSpec) -> list[str]:
        """What differs from `spec` (empty when the wiring is intact)."""
        ...


class KernelNetSetup:
    def add(self, spec: VethSpec) -> VethInfo:
        fd = _open_netns(spec.netns)
        try:
            with _netlink_errors("creating the veth"), Rtnl() as ipr:
                host_idx = _create_pair(ipr, spec, fd)
                try:
                    return _configure(ipr, host_idx, spec, fd)
                except BaseException:
                    _delete_link(ipr, host_idx)
                    raise
        finally:
            os.close(fd)

    def remove(self, netns: str, ifname: str) -> bool:
        try:
            fd = _open_netns(netns)
        except NetnsNotFound:
            return False
        try:
            return _in_netns(fd, lambda: _delete_by_name(ifname))
        finally:
            os.close(fd)

    def check(self, spec: VethSpec) -> list[str]:
        try:
            fd = _open_netns(spec.netns)
        except NetnsNotFound:
            return [f"network namespace {spec.netns} does not exist"]
        try:
            problems = _in_netns(fd, lambda: _container_problems(spec))
        finally:
            os.close(fd)
        with Rtnl() as ipr:
            if ipr.link(spec.host_ifname) is None:
                problems.append(f"host interface {spec.host_ifname} does not exist")
        return problems


def _configure(ipr: Rtnl, host_idx: int, spec: VethSpec, fd: int) -> VethInfo:
    _host_sysctls(spec)
    ipr.set_up(host_idx)
    container_mac = _in_netns(fd, lambda: _configure_container(spec))
    gateway6 = None
    if spec.family(6):
        gateway6 = _wait_link_local(ipr, host_idx, spec.host_ifname)
        _in_netns(fd, lambda: _add_ipv6_default(spec.ifname, gateway6))
    _add_host_routes(ipr, host_idx, spec)
    return VethInfo(spec.host_ifname, HOST_MAC, container_mac, gateway6)


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsNotFound(f"network namespace {path} does not exist") from None
    except OSError as exc:
        raise NetSetupError(f"cannot open network namespace {path}: {exc.strerror}") from None


def _in_netns(fd: int, fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread that has joined the namespace `fd` (the thread then ends,
    taking its namespace membership with it)."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise NetSetupError(f"setns: {os.strerror(ctypes.get_errno())}")
            outcome.append((True, fn()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=body, name="cni-netns")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


@contextlib.contextmanager
def _netlink_errors(step: str) -> Iterator[None]:
    """Turn a NetlinkError into NetSetupError naming the step."""
    try:
        yield
    except NetlinkError as exc:
        raise NetSetupError(f"{step}: {exc.strerror}") from None


def _create_pair(ipr: Rtnl, spec: VethSpec, fd: int) -> int:
    """The veth pair, host side here and peer in the container; a leftover host side of the
    same name (an earlier, interrupted ADD) is replaced, as Calico does."""
    stale = ipr.link(spec.host_ifname)
    if stale is not None:
        _delete_link(ipr, stale.index)
    try:
        ipr.add_veth(spec.host_ifname, HOST_MAC, spec.ifname, fd, spec.mtu)
    except NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            raise NetSetupError(
                f"{spec.ifname} already exists in {spec.netns} (or {spec.host_ifname} on the host)"
            ) from None
        raise
    created = ipr.link(spec.host_ifname)
    if created is None:
        raise NetSetupError(f"{spec.host_ifname} vanished after it was created")
    return created.index


def _host_sysctls(spec: VethSpec) -> None:
    name = spec.host_ifname
    if spec.family(4):
        _sysctl(f"ipv4/conf/{name}/route_localnet", "1")
        _sysctl(f"ipv4/neigh/{name}/proxy_delay", "0")
        _sysctl(f"ipv4/conf/{name}/proxy_arp", "1")
        _sysctl(f"ipv4/conf/{name}/forwarding", "1")
    if spec.family(6):
        _sysctl(f"ipv6/conf/{name}/disable_ipv6", "0")
        _sysctl(f"ipv6/conf/{name}/accept_dad", "0")
        _sysctl(f"ipv6/conf/{name}/proxy_ndp", "1")
        _sysctl(f"ipv6/conf/{name}/forwarding", "1")
    _sysctl(f"ipv6/conf/{name}/accept_ra", "0", required=False)


def _configure_container(spec: VethSpec) -> str:
    """Container side, phase 1 (on the netns thread): sysctls, link up, addresses, IPv4
    routes. Returns the container side's MAC."""
    v4, v6 = spec.family(4), spec.family(6)
    forwarding = "1" if spec.allow_ip_forwarding else "0"
    if v6:
        for conf in ("all", "default", "lo"):
            _sysctl(f"ipv6/conf/{conf}/disable_ipv6", "0")
        _sysctl(f"ipv6/conf/{spec.ifname}/accept_dad", "0")
        _sysctl("ipv6/conf/all/forwarding", forwarding)
    if v4:
        _sysctl("ipv4/ip_forward", forwarding)
    with _netlink_errors("configuring the container interface"), Rtnl() as ipr:
        link = ipr.link(spec.ifname)
        if link is None:
            raise NetSetupError(f"{spec.ifname} is missing in {spec.netns} after it was created")
        ipr.set_up(link.index)
        for address in v4:
            ipr.add_address(link.index, address, 32)
        for address in v6:
            ipr.add_address(link.index, address, 128)
        if v4:
            ipr.add_route(f"{IPV4_GATEWAY}/32", link.index, scope=SCOPE_LINK)
            ipr.add_route("0.0.0.0/0", link.index, gateway=IPV4_GATEWAY)
        return link.mac


def _add_ipv6_default(ifname: str, gateway: str) -> None:
    with _netlink_errors("adding the IPv6 default route"), Rtnl() as ipr:
        link = ipr.link(ifname)
        if link is None:
            raise NetSetupError(f"{ifname} vanished from the container")
        ipr.add_route("::/0", link.index, gateway=gateway)


def _wait_link_local(ipr: Rtnl, idx: int, name: str) -> str:
    """The host side's fe80:: address: the container's IPv6 next hop, as Calico uses it."""
    deadline = time.monotonic() + _LINK_LOCAL_WAIT
    while True:
        for address in ipr.addresses(idx, socket.AF_INET6):
            if ipaddress.ip_address(address).is_link_local:
                return address
        if time.monotonic() > deadline:
            raise NetSetupError(f"{name} got no IPv6 link-local address (is IPv6 disabled?)")
        time.sleep(0.01)


def _add_host_routes(ipr: Rtnl, idx: int, spec: VethSpec) -> None:
    """`<ip> dev cali… scope link`; one that already exists on this interface (Felix may have
    been faster) is fine, one on another interface is a conflict."""
    for address in spec.addresses:
        plen = 128 if ":" in address else 32
        try:
            ipr.add_route(f"{address}/{plen}", idx, scope=SCOPE_LINK, proto=RTPROT_BOOT)
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise NetSetupError(f"adding route {address}: {exc.strerror}") from None
            family = socket.AF_INET6 if plen == 128 else socket.AF_INET
            routes = ipr.routes(family)
            if not any(r.dst == address and r.dst_len == plen and r.oif == idx for r in routes):
                raise NetSetupError(
                    f"a route to {address} already exists via another interface"
                ) from None


def _delete_link(ipr: Rtnl, idx: int) -> None:
    try:
        ipr.delete_link(idx)
    except NetlinkError as exc:
        if exc.errno != errno.ENODEV:
            raise NetSetupError(f"deleting interface {idx}: {exc.strerror}") from None


def _delete_by_name(ifname: str) -> bool:
    with Rtnl() as ipr:
        found = ipr.link(ifname)
        if found is None:
            return False
        _delete_link(ipr, found.index)
        return True


def _container_problems(spec: VethSpec) -> list[str]:
    with Rtnl() as ipr:
        found = ipr.link(spec.ifname)
        if found is None:
            return [f"{spec.ifname} does not exist in {spec.netns}"]
        have = set(ipr.addresses(found.index))
        problems = [f"{a} is not on {spec.ifname}" for a in spec.addresses if a not in have]
        for version, dst in ((4, "0.0.0.0/0"), (6, "::/0")):
            family = socket.AF_INET6 if version == 6 else socket.AF_INET
            if spec.family(version) and not any(r.dst_len == 0 for r in ipr.routes(family)):
                problems.append(f"no default route {dst} in {spec.netns}")
        return problems


def _sysctl(name: str, value: str, *, required: bool = True) -> None:
    """Write /proc/sys/net/<name> in the calling thread's network namespace."""
    try:
        with open(f"/proc/sys/net/{name}", "w") as f:
            f.write(value)
    except OSError as exc:
        if required:
            raise NetSetupError(f"sysctl net/{name}={value}: {exc.strerror}") from None


def addresses_of(cidrs: Sequence[str]) -> tuple[str, ...]:
    """Bare addresses of interface CIDRs ("10.0.0.5/26" -> "10.0.0.5")."""
    return tuple(str(ipaddress.ip_interface(c).ip) for c in cidrs)
