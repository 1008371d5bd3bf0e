"""VTEP and VXLAN route messages -> the VXLAN devices, their routes, the `all-vxlan-net` IP
set, the filter rules that guard VXLAN, and the workloads' MTU file (Felix's vxlan_mgr.go).

Inputs: `VTEPUpdate`/`VTEPRemove` (every host's VTEP per family, this host's included) and
`RouteUpdate`/`RouteRemove` (IPAM blocks of VXLAN pools, and /32s or /128s to remote
endpoints' addresses outside their hosts' blocks), plus interface events. Outputs:
desired state for the per-family `VXLANDevice` (this host's VTEP -> the device; the others
-> neighbour and FDB entries), for a per-family `RouteTable` that owns the device's routes,
blackhole routes and the DIRECT routes on the parent interface (Felix's protocol 80), for
the IP set drivers and the filter tables; `apply()` (driver phase) then writes the devices
and routes, and the MTU file.

VXLAN is in use in a family when `vxlanEnabled` is not false and this host has a VTEP in it
(the calculation sends one only when the host has a VXLAN tunnel address, i.e. when a VXLAN
pool exists): unset means Calico's "auto", and true behaves the same (there is nothing to
program before this host's VTEP is known). When it is false, nothing is programmed, a
leftover device is deleted (as Felix does), and VXLAN messages for this host are reported
as an error rather than half-programmed. Out of use, the device, its routes, the IP set and
the VXLAN rules all go; the MTU file is written only while VXLAN is in use.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from calico.calc.messages import (
    IPSetType,
    Message,
    RouteRemove,
    RouteType,
    RouteUpdate,
    VTEPRemove,
    VTEPUpdate,
)
from calico.dataplane.drivers.ipsets import IPSets
from calico.dataplane.drivers.routetable import BLACKHOLE, RouteTable, RouteTarget
from calico.dataplane.drivers.vxlan import DeviceSpec, Peer, VXLANDevice
from calico.dataplane.managers.policy import ChainTable
from calico.model.vxlan import DEFAULT_VNI
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.static import static_filter_chains

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VXLANSettings:
    """Felix's VXLAN parameters (the UDP port is `RulesConfig.vxlan_port`)."""

    enabled: bool | None = None  # vxlanEnabled; None (unset): auto
    vni: int = DEFAULT_VNI  # vxlanVNI
    mtu: int = 0  # vxlanMTU; 0: parent MTU - 50
    mtu_v6: int = 0  # vxlanMTUV6; 0: parent MTU - 70
    mtu_file: str | None = None  # MTUFilePath; None: write no MTU file


class VXLANManager:
    def __init__(
        self,
        hostname: str,
        cfg: RulesConfig,
        settings: VXLANSettings,
        tables: Iterable[ChainTable],
        ipsets: Iterable[IPSets],
        devices: Mapping[int, VXLANDevice],
        routes: Mapping[int, RouteTable],
    ) -> None:
        self._hostname = hostname
        self._cfg = cfg
        self._settings = settings
        self._filters = {t.ip_version: t for t in tables if t.table == "filter"}
        self._ipsets = {s.ip_version: s for s in ipsets}
        self.devices = dict(devices)
        self.routes = dict(routes)
        self._vteps: dict[tuple[str, int], VTEPUpdate] = {}
        self._wanted_routes: dict[str, RouteUpdate] = {}
        self._direct: dict[int, list[RouteTarget]] = {v: [] for v in self.devices}
        self._parents: dict[int, str | None] = {v: None for v in self.devices}
        self._dirty = True
        self._refusing = False
        self._mtu_written: int | None = None

    def on_update(self, msg: Message) -> None:
        match msg:
            case VTEPUpdate(node=node, ip_version=version):
                self._vteps[(node, version)] = msg
            case VTEPRemove(node=node, ip_version=version):
                self._vteps.pop((node, version), None)
            case RouteUpdate(dst=dst):
                self._wanted_routes[dst] = msg
            case RouteRemove(dst=dst):
                self._wanted_routes.pop(dst, None)
            case _:
                return
        self._dirty = True

    def on_iface_state(self, iface: str, up: bool, index: int) -> None:
        for version, device in self.devices.items():
            device.on_iface_change(iface)
            table = self.routes[version]
            if iface.startswith(table.iface_prefixes):
                table.on_iface_state(iface, up, index)

    def in_use(self, version: int) -> bool:
        return self._settings.enabled is not False and (self._hostname, version) in self._vteps

    def complete_deferred_work(self) -> None:
        if not self._dirty:
            return
        self._report_refusal()
        for version in self.devices:
            self._plan(version)
        self._dirty = False

    def _report_refusal(self) -> None:
        refusing = self._settings.enabled is False and (
            any(node == self._hostname for node, _ in self._vteps)
            or any(r.type is RouteType.VXLAN for r in self._wanted_routes.values())
        )
        if refusing and not self._refusing:
            log.error(
                "this host has a VXLAN tunnel endpoint or VXLAN routes, but vxlanEnabled is"
                " false: VXLAN is not programmed (unset vxlanEnabled or set it true)"
            )
        self._refusing = refusing

    def _plan(self, version: int) -> None:
        use = self.in_use(version)
        vteps = [t for (_, v), t in self._vteps.items() if v == version] if use else []
        own = self._vteps.get((self._hostname, version)) if use else None
        peers = [t for t in vteps if t.node != self._hostname]
        device = self.devices[version]
        device.set_device(None if own is None else self._spec(own))
        device.set_peers({_ip(t.tunnel_addr): Peer(t.mac.lower(), _ip(t.parent_ip)) for t in peers})
        host_len = 32 if version == 4 else 128
        ipsets = self._ipsets.get(version)
        if ipsets is not None and use:
            members = {f"{t.parent_ip}/{host_len}" for t in vteps}
            ipsets.set_members(naming.IPSET_ID_ALL_VXLAN_NET, IPSetType.NET, members)
        elif ipsets is not None:
            ipsets.remove(naming.IPSET_ID_ALL_VXLAN_NET)
        if (table := self._filters.get(version)) is not None:
            table.update_chains(static_filter_chains(self._cfg, version, vxlan=use))
        self._plan_routes(version, use)

    def _spec(self, own: VTEPUpdate) -> DeviceSpec:
        mtu = self._settings.mtu if own.ip_version == 4 else self._settings.mtu_v6
        return DeviceSpec(
            vni=self._settings.vni,
            port=self._cfg.vxlan_port,
            local=_ip(own.parent_ip),
            mac=own.mac.lower(),
            addr=_ip(own.tunnel_addr),
            mtu=mtu,
        )

    def _plan_routes(self, version: int, use: bool) -> None:
        by_type: dict[RouteType, list[RouteTarget]] = {t: [] for t in RouteType}
        for route in self._wanted_routes.values() if use else ():
            if ipaddress.ip_network(route.dst).version != version:
                continue
            onlink = route.type is RouteType.VXLAN
            gateway = route.next_hop if route.type is not RouteType.BLACKHOLE else None
            by_type[route.type].append(RouteTarget(route.dst, gateway=gateway, onlink=onlink))
        table = self.routes[version]
        table.set_routes(self.devices[version].name, by_type[RouteType.VXLAN])
        table.set_routes(BLACKHOLE, by_type[RouteType.BLACKHOLE])
        self._direct[version] = by_type[RouteType.DIRECT]
        self._set_parent(version, self._parents[version])

    def resync(self) -> None:
        for device in self.devices.values():
            device.resync()

    def apply(self) -> None:
        """Driver phase, after the workload routes: devices, then their routes."""
        for version, device in self.devices.items():
            if device.apply():
                self.routes[version].resync()  # the device's index or state changed
            self._set_parent(version, device.parent)
            self.routes[version].apply()
        self._write_mtu()

    def _set_parent(self, version: int, parent: str | None) -> None:
        """DIRECT routes go on the parent interface; a table given up keeps its ownership."""
        table, old = self.routes[version], self._parents[version]
        if old is not None and old != parent:
            table.remove_interface(old)
        if parent is not None:
            table.own(parent)
            table.set_routes(parent, self._direct[version])
        self._parents[version] = parent

    def _write_mtu(self) -> None:
        """The smallest tunnel MTU, for the CNI plugin (Calico's /var/lib/calico/mtu)."""
        mtus = [d.mtu for d in self.devices.values() if d.mtu]
        path = self._settings.mtu_file
        if not path or not mtus or min(mtus) == self._mtu_written:
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.tmp")
        scratch.write_text(str(min(mtus)))
        os.replace(scratch, target)
        self._mtu_written = min(mtus)


def _ip(text: str) -> str:
    """An address as the kernel prints it."""
    return str(ipaddress.ip_address(text))
