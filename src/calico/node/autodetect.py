"""The node's address: Calico's `first-found` autodetection.

`first_found` (pure) picks the first global-scope address, in interface order, on an interface
that Calico's default exclusion list does not skip (loopback, `cali*`, docker bridges, tunnels
...). `local_addresses` reads this network namespace's addresses with `ip -j addr`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# calico/node's default skip list for first-found (autodetection/filtered.go).
DEFAULT_EXCLUDES = (
    r"^docker.*",
    r"^cbr.*",
    r"^dummy.*",
    r"^virbr.*",
    r"^lxcbr.*",
    r"^veth.*",
    r"^lo$",
    r"^cali.*",
    r"^tunl.*",
    r"^flannel.*",
    r"^kube-ipvs.*",
    r"^cni.*",
    r"^vxlan.calico.*",
    r"^vxlan-v6.calico.*",
    r"^wireguard.cali.*",
    r"^wg-v6.cali.*",
    r"^nodelocaldns.*",
)


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    ifname: str
    cidr: str  # address with prefix length
    scope: str  # "global", "link", "host"


def first_found(
    addresses: Iterable[InterfaceAddress], version: int, excludes: Sequence[str] = DEFAULT_EXCLUDES
) -> str | None:
    """The first usable address of the IP version ("a.b.c.d/len"), or None."""
    patterns = [re.compile(p) for p in excludes]
    for addr in addresses:
        if any(p.match(addr.ifname) for p in patterns) or addr.scope != "global":
            continue
        iface = ipaddress.ip_interface(addr.cidr)
        if iface.version != version or iface.ip.is_link_local or iface.ip.is_loopback:
            continue
        return str(iface)
    return None


def parse_ip_addr_json(text: str) -> list[InterfaceAddress]:
    """`ip -j addr show` output, in interface order."""
    out = []
    for link in json.loads(text or "[]"):
        for info in link.get("addr_info", []):
            if "local" in info and "prefixlen" in info:
                cidr = f"{info['local']}/{info['prefixlen']}"
                out.append(InterfaceAddress(link["ifname"], cidr, info.get("scope", "global")))
    return out


def local_addresses() -> list[InterfaceAddress]:
    proc = subprocess.run(
        ["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True, timeout=10
    )
    return parse_ip_addr_json(proc.stdout)
