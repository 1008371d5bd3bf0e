"""Hand-made packets sent from inside a workload (raw sockets, Python's socket module only).

- `send_raw_udp`: a UDP datagram with any source address, IPv4 (IP_HDRINCL) or IPv6
  (IPPROTO_RAW, which implies IPV6_HDRINCL): the kernel routes it, nothing checks the source.
- `claim_neighbour`: ARP replies and gratuitous requests (IPv4) or unsolicited, overriding
  Neighbour Advertisements (IPv6) saying that `target` is at the sender's MAC, as raw frames.
"""

from __future__ import annotations

import sys

from calico.testing.netns import Namespaces

_SCRIPT = r"""
import socket, struct, sys
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def udp_raw(src, dst, port, payload, count):
    body = payload.encode()
    if ":" not in src:
        udp = struct.pack("!HHHH", 40000, port, 8 + len(body), 0) + body
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for _ in range(count): s.sendto(ip + udp, (dst, 0))
        return
    s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    length = 8 + len(body)
    pseudo = s6 + d6 + struct.pack("!I3xB", length, 17)
    head = struct.pack("!HHHH", 40000, port, length, 0)
    check = csum(pseudo + head + body) or 0xFFFF
    udp = struct.pack("!HHHH", 40000, port, length, check) + body
    ip = struct.pack("!IHBB16s16s", 6 << 28, length, 17, 64, s6, d6)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for _ in range(count): s.sendto(ip + udp, (dst, 0))
def claim(iface, target, count):
    mac = bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    frames = []
    if ":" not in target:
        tip, bcast = socket.inet_aton(target), b"\xff" * 6
        for op, tha in ((2, bcast), (1, b"\0" * 6)):  # reply, gratuitous request
            arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, mac, tip, tha, tip)
            frames.append(bcast + mac + b"\x08\x06" + arp)
    else:
        own = socket.inet_pton(socket.AF_INET6, sys.argv[4])
        tgt = socket.inet_pton(socket.AF_INET6, target)
        all_nodes = socket.inet_pton(socket.AF_INET6, "ff02::1")
        option = struct.pack("!BB6s", 2, 1, mac)  # target link-layer address
        na = struct.pack("!BBHI16s", 136, 0, 0, 0x20000000, tgt) + option  # Override
        pseudo = own + all_nodes + struct.pack("!I3xB", len(na), 58)
        na = na[:2] + struct.pack("!H", csum(pseudo + na)) + na[4:]
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(na), 58, 255, own, all_nodes)
        frames.append(b"\x33\x33\x00\x00\x00\x01" + mac + b"\x86\xdd" + ip + na)
    for _ in range(count):
        for frame in frames: s.send(frame)
mode = sys.argv[1]
if mode == "udp":
    udp_raw(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
else:
    claim("eth0", sys.argv[2], int(sys.argv[3]))
"""


def send_raw_udp(
    ns: Namespaces, where: str, src: str, dst: str, port: int, payload: str, count: int = 3
) -> None:
    ns.exec(where, [sys.executable, "-c", _SCRIPT, "udp", src, dst, str(port), payload, str(count)])


def claim_neighbour(ns: Namespaces, where: str, target: str, own: str, count: int = 10) -> None:
    """From `where` (whose address `own` is), claim `target`'s address for its own MAC."""
    ns.exec(where, [sys.executable, "-c", _SCRIPT, "claim", target, str(count), own])
