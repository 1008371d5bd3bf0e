"""VXLAN constants and the VTEP MAC rule shared by calc, Felix and `calico node` (pure).

Calico's defaults: VNI 4096, UDP port 4789, devices `vxlan.calico` (IPv4) and
`vxlan-v6.calico` (IPv6). The encapsulation costs 50 bytes over IPv4 and 70 over IPv6, so
an auto-detected tunnel MTU is the parent interface's MTU less that.

A node whose Node resource has no `vxlanTunnelMACAddr(V6)` gets a deterministic MAC, as
Calico's VXLAN resolver computes it: byte 0x66 ("f": locally administered, unicast) then
the first five bytes of SHA-1 of the node name (name + "-v6" for IPv6). Every host derives
the same MAC for a peer without reading anything but its name.
"""

from __future__ import annotations

import hashlib

DEFAULT_VNI = 4096
DEFAULT_PORT = 4789
DEVICE_V4 = "vxlan.calico"
DEVICE_V6 = "vxlan-v6.calico"
# Where Felix writes the workloads' MTU and the CNI plugin reads it (Calico's fixed path;
# Felix's MTUFilePath and the CNI's mtu_file_path move it, e.g. per lab host).
DEFAULT_MTU_FILE = "/var/lib/calico/mtu"
OVERHEAD = {4: 50, 6: 70}


def device_name(ip_version: int) -> str:
    return DEVICE_V4 if ip_version == 4 else DEVICE_V6


def vtep_mac(node: str, ip_version: int, configured: str | None = None) -> str:
    """The VTEP MAC of `node`: the configured one if set, else Calico's derived one."""
    if configured:  # validated by the Node model; "-" separators are valid there too
        return configured.lower().replace("-", ":")
    name = node if ip_version == 4 else node + "-v6"
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).digest()
    return ":".join(f"{b:02x}" for b in b"f" + digest[:5])


def tunnel_handle(node: str, ip_version: int) -> str:
    """IPAM handle of a node's VXLAN tunnel address (calico/node's allocateip names)."""
    return f"vxlan-tunnel-addr-{node}" if ip_version == 4 else f"vxlan-v6-tunnel-addr-{node}"


def vxlan_enabled(vxlan_mode: str | None) -> bool:
    """True for a pool's vxlanMode Always or CrossSubnet (unset means Never)."""
    return (vxlan_mode or "Never") != "Never"
