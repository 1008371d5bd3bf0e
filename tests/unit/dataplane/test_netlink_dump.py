"""LeanDumps' decoding of netlink dump answers, fed crafted datagrams over a socketpair."""

from __future__ import annotations

import socket
import struct

import pytest

from calico.dataplane.drivers import netlink_dump as nd
from calico.dataplane.drivers.iface_monitor import AddrEvent, LinkEvent, parse_message


class FakeNetlink:
    marshal = None

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.closed = True


def attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, seq: int, payload: bytes = b"", flags: int = 2) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload
    return raw + b"\0" * (-len(raw) % 4)


def link(index: int, name: bytes, flags: int, seq: int = 1) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0) + attr(nd.IFLA_IFNAME, name + b"\0")
    return message(nd.RTM_NEWLINK, seq, body + attr(99, b"\x01\x02\x03"))


@pytest.fixture
def pair() -> tuple[nd.LeanDumps, socket.socket]:
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    return nd.LeanDumps(FakeNetlink(ours)), kernel


def test_links_across_datagrams_skipping_leftovers(
    pair: tuple[nd.LeanDumps, socket.socket],
) -> None:
    lean, kernel = pair
    kernel.send(link(7, b"stale", 0, seq=0) + link(1, b"lo", 0x49))
    kernel.send(link(2, b"cali1", 0x1003) + message(nd.NLMSG_DONE, 1))
    events = [parse_message(m) for m in lean.get_links()]
    assert events == [LinkEvent(1, "lo", True, True), LinkEvent(2, "cali1", False, True)]
    request = kernel.recv(100)
    assert struct.unpack_from("=IHHII", request) == (32, nd.RTM_GETLINK, 0x301, 1, 0)


def test_addresses_prefer_local_and_skip_other_families(
    pair: tuple[nd.LeanDumps, socket.socket],
) -> None:
    lean, kernel = pair
    v4 = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 3)
    ptp = (
        v4
        + attr(nd.IFA_ADDRESS, bytes([198, 18, 5, 6]))
        + attr(nd.IFA_LOCAL, bytes([198, 18, 5, 5]))
    )
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 4)
    v6 += attr(nd.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
    other = struct.pack("=BBBBI", 17, 0, 0, 0, 5) + attr(nd.IFA_ADDRESS, b"\0" * 6)
    datagram = b"".join(message(nd.RTM_NEWADDR, 1, p) for p in (ptp, v6, other))
    kernel.send(datagram + message(nd.NLMSG_DONE, 1))
    events = [parse_message(m) for m in lean.get_addr()]
    assert events == [AddrEvent(3, "198.18.5.5", True), AddrEvent(4, "2001:db8::1", True)]


def test_an_interrupted_dump_is_done_again(pair: tuple[nd.LeanDumps, socket.socket]) -> None:
    lean, kernel = pair
    kernel.send(link(1, b"lo", 0x49) + message(nd.RTM_NEWLINK, 1, flags=0x12))  # DUMP_INTR
    kernel.send(message(nd.NLMSG_DONE, 1))
    kernel.send(link(1, b"lo", 0x49, seq=2) + message(nd.NLMSG_DONE, 2))
    assert [m["ifname"] for m in lean.get_links()] == ["lo"]


def test_errors_and_endless_interruptions_raise(pair: tuple[nd.LeanDumps, socket.socket]) -> None:
    lean, kernel = pair
    kernel.send(message(nd.NLMSG_ERROR, 1, struct.pack("=i", -16) + b"\0" * 16))
    with pytest.raises(nd.DumpError) as failed:
        lean.get_links()
    assert failed.value.errno == 16
    for seq in range(2, 2 + nd._ATTEMPTS):
        kernel.send(message(nd.RTM_NEWLINK, seq, flags=0x12) + message(nd.NLMSG_DONE, seq))
    with pytest.raises(nd.DumpError):
        lean.get_links()
    lean.close()
