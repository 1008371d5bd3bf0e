"""etcd keys of Calico's IPAM records, both directions (pure).

The layout is libcalico-go's (`backend/model/block.go`, `block_affinity.go`,
`ipam_handle.go`), so a datastore written by Calico reads here and vice versa:

    /calico/ipam/v2/assignment/ipv<4|6>/block/<cidr, "/" as "-">      allocation block
    /calico/ipam/v2/host/<host>/ipv<4|6>/block/<cidr, "/" as "-">     block affinity
    /calico/ipam/v2/handle/<handle id>                                 handle
"""

from __future__ import annotations

import ipaddress
import re

BLOCKS_PREFIX = "/calico/ipam/v2/assignment/"
HOSTS_PREFIX = "/calico/ipam/v2/host/"
HANDLES_PREFIX = "/calico/ipam/v2/handle/"

_BLOCK = re.compile(r"^/calico/ipam/v2/assignment/ipv[46]/block/([^/]+)$")
_AFFINITY = re.compile(r"^/calico/ipam/v2/host/([^/]+)/ipv[46]/block/([^/]+)$")
_HANDLE = re.compile(r"^/calico/ipam/v2/handle/([^/]+)$")


def _version(cidr: str) -> int:
    return ipaddress.ip_network(cidr).version


def _encode(cidr: str) -> str:
    return cidr.replace("/", "-", 1)


def _decode(text: str) -> str | None:
    """The CIDR an encoded key segment names, or None if it is not a valid network."""
    try:
        return str(ipaddress.ip_network(text.replace("-", "/", 1)))
    except ValueError:
        return None


def block_key(cidr: str) -> str:
    return f"{BLOCKS_PREFIX}ipv{_version(cidr)}/block/{_encode(cidr)}"


def blocks_prefix(version: int | None = None) -> str:
    return f"{BLOCKS_PREFIX}ipv{version}/block/" if version else BLOCKS_PREFIX


def affinity_key(host: str, cidr: str) -> str:
    return f"{HOSTS_PREFIX}{host}/ipv{_version(cidr)}/block/{_encode(cidr)}"


def affinities_prefix(host: str | None = None, version: int | None = None) -> str:
    if host is None:
        return HOSTS_PREFIX
    return f"{HOSTS_PREFIX}{host}/ipv{version}/block/" if version else f"{HOSTS_PREFIX}{host}/"


def handle_key(handle_id: str) -> str:
    return f"{HANDLES_PREFIX}{handle_id}"


def parse_block_key(key: str) -> str | None:
    match = _BLOCK.match(key)
    return _decode(match.group(1)) if match else None


def parse_affinity_key(key: str) -> tuple[str, str] | None:
    """(host, cidr) of an affinity key, or None."""
    match = _AFFINITY.match(key)
    cidr = _decode(match.group(2)) if match else None
    return (match.group(1), cidr) if match and cidr else None


def parse_handle_key(key: str) -> str | None:
    match = _HANDLE.match(key)
    return match.group(1) if match else None
