"""One IP family's VXLAN device (`vxlan.calico` / `vxlan-v6.calico`), its tunnel address,
and the permanent neighbour and FDB entries that map remote VTEPs onto it.

Role: the VXLAN manager declares the device it wants (or none) and the remote VTEPs;
`apply()` makes the kernel agree. Inputs: `set_device`, `set_peers`, `resync()`,
`on_iface_change` (the device or its parent changed). Outputs: `ip link` / `ip addr` /
`ip neigh` / `bridge fdb` changes; `parent` and `mtu` for the manager afterwards.

As Calico's Felix: VNI, UDP port, local address (the parent IP) and parent interface (the one
holding that address) are fixed at creation, so a device with other values is deleted and
created again; MAC and MTU are set in place (MTU 0 = the parent's MTU less the encapsulation
overhead); learning is off, so the FDB holds exactly our entries. The device, its global
addresses, its permanent neighbours and its FDB entries with a remote are all ours: anything
else found there is removed. Nothing is cached between applies: each apply of a dirty device
reads it afresh (a handful of entries per host), so a restarted Felix repairs whatever it
finds. A device is dirty after a change of desired state, a link event of the device or its
parent, and each periodic route refresh: a parent MTU change or a parent address moving to
another interface is picked up by that refresh. Not thread-safe: dataplane thread only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from calico.model.vxlan import OVERHEAD, device_name
from calico.programs import CommandRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    vni: int
    port: int
    local: str  # the parent IP: source of the encapsulated packets
    mac: str
    addr: str  # tunnel address, configured as a host prefix
    mtu: int = 0  # 0: the parent interface's MTU less OVERHEAD


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote VTEP: its device MAC and the host address its packets are sent to."""

    mac: str
    parent_ip: str


class ParentNotFound(RuntimeError):
    pass


class VXLANDevice:
    def __init__(self, runner: CommandRunner, ip_version: int) -> None:
        self._runner = runner
        self.ip_version = ip_version
        self.name = device_name(ip_version)
        self._host_len = 32 if ip_version == 4 else 128
        self._desired: DeviceSpec | None = None
        self._peers: dict[str, Peer] = {}  # tunnel address -> peer
        self.dirty = True
        self.parent: str | None = None  # the parent interface, as of the last apply
        self.mtu: int | None = None  # the device's MTU, as of the last apply

    def set_device(self, spec: DeviceSpec | None) -> None:
        if spec != self._desired:
            self._desired = spec
            self.dirty = True

    def set_peers(self, peers: dict[str, Peer]) -> None:
        if peers != self._peers:
            self._peers = dict(peers)
            self.dirty = True

    def resync(self) -> None:
        self.dirty = True

    def on_iface_change(self, iface: str) -> None:
        if iface in (self.name, self.parent):
            self.dirty = True

    def apply(self) -> bool:
        """Makes the kernel match; True if the link itself was created, deleted or changed
        (route tables must then re-read their interfaces). Raises on failure (stays dirty)."""
        if not self.dirty:
            return False
        link = self._read_link()
        if self._desired is None:
            changed = link is not None
            if changed:
                self._ip("link", "del", self.name)
            self.parent, self.mtu = None, None
        else:
            changed = self._ensure_link(self._desired, link)
            self._ensure_addr(self._desired)
            self._sync_neighbours()
            self._sync_fdb()
        self.dirty = False
        return changed

    def _ip(self, *args: str) -> str:
        return self._runner.run(["ip", f"-{self.ip_version}", *args]).stdout

    def _json(self, *args: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(self._ip("-j", *args).strip() or "[]")
        return out

    def _read_link(self) -> dict[str, Any] | None:
        result = self._runner.run(["ip", "-j", "-d", "link", "show", "dev", self.name], check=False)
        links = json.loads(result.stdout.strip() or "[]") if result.returncode == 0 else []
        return links[0] if links else None

    def _find_parent(self, local: str) -> tuple[str, int]:
        """The interface holding `local`, and its MTU."""
        for link in self._json("addr", "show", "to", f"{local}/{self._host_len}"):
            if link["ifname"] != self.name:
                return link["ifname"], int(link["mtu"])
        raise ParentNotFound(f"{self.name}: no interface has the parent address {local}")

    def _ensure_link(self, spec: DeviceSpec, link: dict[str, Any] | None) -> bool:
        parent, parent_mtu = self._find_parent(spec.local)
        mtu = spec.mtu or parent_mtu - OVERHEAD[self.ip_version]
        changed = False
        if link is not None and not _same_tunnel(link, spec, parent):
            log.info("%s has other tunnel parameters than wanted: recreating it", self.name)
            self._ip("link", "del", self.name)
            link, changed = None, True
        if link is None:
            self._ip(
                "link", "add", self.name, "type", "vxlan", "id", str(spec.vni),
                "dstport", str(spec.port), "local", spec.local, "dev", parent, "nolearning",
            )  # fmt: skip
            changed = True
        if link is None or (link["address"], link["mtu"], "UP" in link["flags"]) != (
            spec.mac,
            mtu,
            True,
        ):
            self._ip("link", "set", self.name, "address", spec.mac, "mtu", str(mtu), "up")
            changed = True
        self.parent, self.mtu = parent, mtu
        return changed

    def _ensure_addr(self, spec: DeviceSpec) -> None:
        want = f"{spec.addr}/{self._host_len}"
        have = {
            f"{a['local']}/{a['prefixlen']}"
            for link in self._json("addr", "show", "dev", self.name)
            for a in link.get("addr_info", ())
            if a.get("scope") == "global"
        }
        for addr in sorted(have - {want}):
            self._ip("addr", "del", addr, "dev", self.name)
        if want not in have:
            extra = ("nodad",) if self.ip_version == 6 else ()
            self._ip("addr", "add", want, "dev", self.name, *extra)

    def _sync_neighbours(self) -> None:
        have = {
            n["dst"]: n.get("lladdr", "").lower()
            for n in self._json("neigh", "show", "dev", self.name, "nud", "permanent")
        }
        want = {addr: peer.mac for addr, peer in self._peers.items()}
        lines = [f"neigh del {addr} dev {self.name}" for addr in sorted(have.keys() - want)]
        lines += [
            f"neigh replace {addr} lladdr {mac} dev {self.name} nud permanent"
            for addr, mac in sorted(want.items())
            if have.get(addr) != mac
        ]
        if lines:
            self._runner.run(["ip", f"-{self.ip_version}", "-batch", "-"], stdin=_script(lines))

    def _sync_fdb(self) -> None:
        out = self._runner.run(["bridge", "-j", "fdb", "show", "dev", self.name]).stdout
        have = {(e["mac"].lower(), e["dst"]) for e in json.loads(out or "[]") if "dst" in e}
        want = {(peer.mac, peer.parent_ip) for peer in self._peers.values()}
        tail = f"dev {self.name} dst"
        lines = [f"fdb del {mac} {tail} {dst} self" for mac, dst in sorted(have - want)]
        lines += [
            f"fdb append {mac} {tail} {dst} self permanent" for mac, dst in sorted(want - have)
        ]
        if lines:
            self._runner.run(["bridge", "-batch", "-"], stdin=_script(lines))


def _same_tunnel(link: dict[str, Any], spec: DeviceSpec, parent: str) -> bool:
    """Whether an existing link has the parameters that are fixed at creation."""
    info = link.get("linkinfo", {})
    data = info.get("info_data", {})
    return info.get("info_kind") == "vxlan" and (
        data.get("id"),
        data.get("port"),
        data.get("local") or data.get("local6"),
        data.get("link"),
        data.get("learning"),
    ) == (spec.vni, spec.port, spec.local, parent, False)


def _script(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)
