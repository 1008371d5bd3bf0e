"""Hosts on one L2 fabric, each with a workload, driven by Felix's dataplane loop fed VTEP and
route messages directly (no datastore at this layer).

Topology (every namespace created here; nothing in the root namespace):
  fab:br0 ── host a eth0 198.18.0.1 / 2001:db8:ff::1 ── wl0 ── workload a 198.19.1.2 / 2001:db8:1::2
          ── host b eth0 198.18.0.2 / 2001:db8:ff::2 ── wl0 ── workload b 198.19.2.2 / 2001:db8:2::2
          ── host c eth0 198.18.0.3 / 2001:db8:ff::3     (no workload)
Host i's IPAM blocks are 198.19.i.0/26 and 2001:db8:i::/122, its VTEP tunnel addresses
198.19.i.1 and 2001:db8:i::1. Workload interfaces are named `wl0`, outside Felix's `cali`
prefix, so the workload route table leaves the hand-made workload routes alone.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.calc.messages import InSync, Message, RouteType, RouteUpdate, VTEPUpdate
from calico.dataplane.kernel import open_netlink
from calico.dataplane.loop import DataplaneSettings, InternalDataplane
from calico.dataplane.managers.vxlan import VXLANSettings
from calico.model.vxlan import device_name, vtep_mac
from calico.programs import Runner
from calico.rules.config import RulesConfig
from calico.testing.netns import Namespaces

HOSTS = {"a": 1, "b": 2, "c": 3}


def host_ip(name: str, version: int) -> str:
    i = HOSTS[name]
    return f"198.18.0.{i}" if version == 4 else f"2001:db8:ff::{i}"


def tunnel_ip(name: str, version: int) -> str:
    i = HOSTS[name]
    return f"198.19.{i}.1" if version == 4 else f"2001:db8:{i}::1"


def workload_ip(name: str, version: int) -> str:
    i = HOSTS[name]
    return f"198.19.{i}.2" if version == 4 else f"2001:db8:{i}::2"


def block(name: str, version: int) -> str:
    i = HOSTS[name]
    return f"198.19.{i}.0/26" if version == 4 else f"2001:db8:{i}::/122"


def vtep(name: str, version: int) -> VTEPUpdate:
    mac = vtep_mac(name, version)
    return VTEPUpdate(name, version, tunnel_ip(name, version), mac, host_ip(name, version))


def routes_seen_by(me: str, peers: list[str], version: int, kind: RouteType) -> list[Message]:
    """What the calculation sends `me`: a blackhole for its own block, a route to each peer's."""
    out: list[Message] = [RouteUpdate(block(me, version), me, RouteType.BLACKHOLE, "")]
    for peer in peers:
        hop = tunnel_ip(peer, version) if kind is RouteType.VXLAN else host_ip(peer, version)
        out.append(RouteUpdate(block(peer, version), peer, kind, hop))
    return out


def full_state(me: str, peers: list[str], kind: RouteType = RouteType.VXLAN) -> list[Message]:
    msgs: list[Message] = [InSync()]
    for version in (4, 6):
        msgs += [vtep(n, version) for n in (me, *peers)]
        msgs += routes_seen_by(me, peers, version, kind)
    return msgs


@dataclass
class Lab:
    ns: Namespaces
    hosts: dict[str, str]  # name -> netns
    workloads: dict[str, str]  # host name -> workload netns
    tmp: Path
    started: list[InternalDataplane] = field(default_factory=list)

    def exec(self, host: str, *args: str, check: bool = True) -> str:
        return self.ns.exec(self.hosts[host], list(args), check=check).stdout

    def json(self, host: str, *args: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(self.exec(host, *args) or "[]")
        return out

    def dataplane(self, host: str, **vxlan: Any) -> InternalDataplane:
        settings = DataplaneSettings(
            rules=RulesConfig(),
            route_refresh=1.0,  # quick periodic resync: drift is repaired within a second
            hostname=host,
            vxlan=VXLANSettings(mtu_file=str(self.mtu_file(host)), **vxlan),
        )
        netns = self.hosts[host]
        dp = InternalDataplane(
            settings, Runner(netns=netns), functools.partial(open_netlink, netns)
        )
        dp.start()
        self.started.append(dp)
        return dp

    def stop(self, dp: InternalDataplane) -> None:
        dp.stop()
        self.started.remove(dp)

    def stop_all(self) -> None:
        for dp in list(self.started):
            self.stop(dp)

    def mtu_file(self, host: str) -> Path:
        return self.tmp / host / "mtu"

    def link(self, host: str, version: int) -> dict[str, Any] | None:
        dev = device_name(version)
        out = self.ns.exec(
            self.hosts[host], ["ip", "-j", "-d", "-s", "link", "show", dev], check=False
        )
        return json.loads(out.stdout)[0] if out.returncode == 0 else None

    def routes(self, host: str, version: int) -> dict[str, dict[str, Any]]:
        got = self.json(host, "ip", "-j", f"-{version}", "route", "show", "proto", "80")
        return {r["dst"]: r for r in got}

    def neighbours(self, host: str, version: int) -> dict[str, str]:
        dev = device_name(version)
        args = ["ip", "-j", f"-{version}", "neigh", "show", "dev", dev, "nud", "permanent"]
        out = self.ns.exec(self.hosts[host], args, check=False)
        return {n["dst"]: n["lladdr"] for n in json.loads(out.stdout or "[]")}

    def fdb(self, host: str, version: int) -> set[tuple[str, str]]:
        args = ["bridge", "-j", "fdb", "show", "dev", device_name(version)]
        out = self.ns.exec(self.hosts[host], args, check=False)
        got = json.loads(out.stdout) if out.returncode == 0 else []
        return {(e["mac"], e["dst"]) for e in got if "dst" in e}

    def pings(self, src: str, dst: str) -> bool:
        result = self.ns.exec(self.workloads[src], ["ping", "-c1", "-W1", dst], check=False)
        return result.returncode == 0


def build(ns: Namespaces, tmp: Path, with_workloads: tuple[str, ...] = ("a", "b")) -> Lab:
    fab = ns.add("fab")
    ns.exec(fab, ["ip", "link", "add", "br0", "type", "bridge"])
    ns.exec(fab, ["ip", "link", "set", "br0", "up"])
    hosts = {}
    for name in HOSTS:
        host = hosts[name] = ns.add(name)
        ns.veth(host, "eth0", fab, f"p{name}")
        ns.exec(fab, ["ip", "link", "set", f"p{name}", "master", "br0"])
        ns.exec(host, ["ip", "addr", "add", f"{host_ip(name, 4)}/24", "dev", "eth0"])
        ns.exec(host, ["ip", "addr", "add", f"{host_ip(name, 6)}/64", "dev", "eth0", "nodad"])
        for sysctl in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            ns.exec(host, ["sysctl", "-qw", sysctl])
    workloads = {name: _workload(ns, hosts[name], name) for name in with_workloads}
    return Lab(ns, hosts, workloads, tmp)


def _workload(ns: Namespaces, host: str, name: str) -> str:
    wl = ns.add(f"w{name}")
    ns.veth(host, "wl0", wl, "eth0")
    v4, v6 = workload_ip(name, 4), workload_ip(name, 6)
    for cmd in (
        ["ip", "addr", "add", "169.254.1.1/32", "dev", "wl0"],
        ["ip", "addr", "add", "fe80::1/64", "dev", "wl0", "nodad"],
        ["ip", "route", "add", f"{v4}/32", "dev", "wl0"],
        ["ip", "-6", "route", "add", f"{v6}/128", "dev", "wl0"],
    ):
        ns.exec(host, cmd)
    for cmd in (
        ["ip", "addr", "add", f"{v4}/32", "dev", "eth0"],
        ["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"],
        ["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"],
        ["ip", "-6", "addr", "add", f"{v6}/128", "dev", "eth0", "nodad"],
        ["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"],
    ):
        ns.exec(wl, cmd)
    return wl
