"""Full link and address dumps decoded here, for the interface monitor.

pyroute2 decodes every attribute of every message (statistics, nested link info...), about
0.5 ms per interface: seconds per dump at thousands of interfaces, on every start and
periodic refresh, while holding the GIL. The monitor needs only a few fields, so
`LeanDumps` wraps a pyroute2 socket, reads dumps off a duplicate of its descriptor and
decodes just those, into the same message shape (`event`, `index`, `flags`, `ifname`;
`local`/`address`) that `iface_monitor.parse_message` reads; everything else (the
subscription) is the wrapped socket's.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, index
_ATTR = struct.Struct("=HH")  # rtattr: length, type
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLM_F_REQUEST, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x10, 0x300
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
_FAMILIES = {socket.AF_INET, socket.AF_INET6}
_TIMEOUT = 10.0
_ATTEMPTS = 5


class DumpError(OSError):
    """The kernel refused a dump, or kept interrupting it: the monitor starts over."""


class LeanDumps:
    """A pyroute2 IPRoute whose `get_links()`/`get_addr()` are decoded here."""

    def __init__(self, netlink: Any) -> None:
        self._netlink = netlink
        self.marshal = netlink.marshal
        self._sock = socket.socket(fileno=os.dup(netlink.fileno()))
        self._sock.settimeout(_TIMEOUT)  # whatever blocking mode pyroute2 left the socket in
        self._seq = 0

    def bind(self, groups: int) -> None:
        self._netlink.bind(groups=groups)

    def fileno(self) -> int:
        return int(self._netlink.fileno())

    def recv(self, bufsize: int) -> bytes:
        return bytes(self._netlink.recv(bufsize))

    def close(self) -> None:
        self._sock.close()
        self._netlink.close()

    def get_links(self) -> list[dict[str, Any]]:
        out = []
        for payload in self._dump(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0), RTM_NEWLINK):
            _, _, index, flags, _ = _IFINFO.unpack_from(payload)
            name = _attrs(payload, _IFINFO.size).get(IFLA_IFNAME, b"").split(b"\0", 1)[0]
            msg = {"event": "RTM_NEWLINK", "index": index, "flags": flags}
            out.append({**msg, "ifname": name.decode(errors="replace")})
        return out

    def get_addr(self) -> list[dict[str, Any]]:
        out = []
        for payload in self._dump(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0), RTM_NEWADDR):
            family, _, _, _, index = _IFADDR.unpack_from(payload)
            if family not in _FAMILIES:
                continue
            msg: dict[str, Any] = {"event": "RTM_NEWADDR", "index": index}
            attrs = _attrs(payload, _IFADDR.size)
            for key, kind in (("address", IFA_ADDRESS), ("local", IFA_LOCAL)):
                if kind in attrs:
                    msg[key] = socket.inet_ntop(family, attrs[kind])
            out.append(msg)
        return out

    def _dump(self, request: int, body: bytes, wanted: int) -> list[bytes]:
        """The payloads of the `wanted` messages answering a dump request. A dump that the
        kernel flags as interrupted (the list changed meanwhile: it may have skipped
        entries) is done again."""
        for _ in range(_ATTEMPTS):
            payloads, interrupted = self._dump_once(request, body, wanted)
            if not interrupted:
                return payloads
        raise DumpError(f"netlink dump {request} interrupted {_ATTEMPTS} times")

    def _dump_once(self, request: int, body: bytes, wanted: int) -> tuple[list[bytes], bool]:
        self._seq += 1
        flags = NLM_F_REQUEST | NLM_F_DUMP
        self._sock.send(_HEADER.pack(_HEADER.size + len(body), request, flags, self._seq, 0) + body)
        payloads: list[bytes] = []
        interrupted = False
        while True:
            data = self._sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, flags, seq, _ = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if length < _HEADER.size or seq != self._seq:
                    continue  # a leftover of an earlier request
                if kind == NLMSG_DONE:
                    return payloads, interrupted
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    raise DumpError(-error, f"netlink dump {request} failed")
                interrupted |= bool(flags & NLM_F_DUMP_INTR)
                if kind == wanted:
                    payloads.append(payload)


def _attrs(payload: bytes, offset: int) -> dict[int, bytes]:
    """Top-level attributes by type (nested ones are left undecoded)."""
    attrs: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(payload):
        length, kind = _ATTR.unpack_from(payload, offset)
        if length < _ATTR.size:
            break
        attrs[kind & 0x3FFF] = payload[offset + _ATTR.size : offset + length]  # no NLA flags
        offset += (length + 3) & ~3
    return attrs
