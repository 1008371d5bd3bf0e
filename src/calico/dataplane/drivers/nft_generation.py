"""The nftables ruleset generation: a cheap "has anything changed?" for the nft backend.

Why: the periodic iptables refresh re-reads every table (`iptables-nft-save` of both families,
~0.5 s of CPU per refresh at scale L, most of Felix's idle cost) to find drift. The kernel
counts every committed nftables transaction in one per-namespace generation number, for all
tables and families, iptables-nft's included; NFT_MSG_GETGEN reads it in one netlink round
trip (~0.1 ms). If it has not moved since our view of the tables was verified, nothing can
have changed behind our back and the re-read is skipped. Counters and conntrack do not move
it; the legacy backend's tables are not nftables, so it says nothing about them.

`NftGeneration.read()` answers the number; `GenerationTracker` holds the rule for trusting a
cached view: it is trusted at generation G only if it was verified (read, or trusted and only
changed by our own writes) and the kernel went from the generation seen before to G by
exactly our own commits. Anything else (a foreign commit in between, a failure, a read error)
distrusts it, so the next refresh reads the kernel as before.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_NFGENMSG = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id (big-endian)
_ATTR = struct.Struct("=HH")
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
_TIMEOUT = 2.0


class NftGeneration:
    """One NETLINK_NETFILTER socket (in the namespace it was opened in) that reads the
    nftables generation."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._sock = sock or self.open_socket()
        self._sock.settimeout(_TIMEOUT)
        self._seq = 0

    @staticmethod
    def open_socket() -> socket.socket:
        """A NETLINK_NETFILTER socket in the calling thread's namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.bind((0, 0))
        return sock

    def read(self) -> int:
        """The current generation; OSError if the kernel does not answer it."""
        self._seq += 1
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
        kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN
        header = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST, self._seq, 0)
        self._sock.send(header + body)
        while True:
            data = self._sock.recv(65536)
            length, kind, _, seq, _ = _HEADER.unpack_from(data)
            if seq != self._seq:
                continue  # a late answer to an earlier request that timed out
            if kind == NLMSG_ERROR:
                errno = -struct.unpack_from("=i", data, _HEADER.size)[0]
                raise OSError(errno, f"NFT_MSG_GETGEN: {os.strerror(errno)}")
            if kind != NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN:
                raise OSError(f"NFT_MSG_GETGEN: unexpected answer type {kind:#x}")
            offset = _HEADER.size + _NFGENMSG.size
            while offset + _ATTR.size <= length:
                size, attr = _ATTR.unpack_from(data, offset)
                if attr & 0x3FFF == NFTA_GEN_ID:
                    return int(struct.unpack_from("!I", data, offset + _ATTR.size)[0])
                offset += (size + 3) & ~3
            raise OSError("NFT_MSG_GETGEN: no generation in the answer")

    def close(self) -> None:
        self._sock.close()


class GenerationTracker:
    """Whether our cached view of the nft tables still matches the kernel (see the module
    docstring). `read` returns the generation, or raises OSError."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        self.trusted: int | None = None  # the generation our views are known to match
        self._before: int | None = None

    def unchanged(self) -> bool:
        """True if nothing was committed since our views were verified: a refresh may skip
        re-reading them."""
        return self.trusted is not None and self.now() == self.trusted

    def begin(self) -> int | None:
        """Before an apply's first read or write of the tables; returns the generation."""
        self._before = self.now()
        if self._before is None or self._before != self.trusted:
            self.trusted = None  # someone committed since: only a full read re-verifies
        return self._before

    def end(self, commits: int, verified: bool) -> None:
        """After a successful apply that made `commits` transactions; `verified`: every
        view used was read in this apply or trusted at its start."""
        after, before = self.now(), self._before
        self._before = None
        ok = verified or self.trusted is not None
        exact = after is not None and before is not None and after - before == commits
        self.trusted = after if ok and exact else None

    def forget(self) -> None:
        """A failed apply: the kernel is in an unknown state."""
        self.trusted = self._before = None

    def now(self) -> int | None:
        """The generation, or None if it cannot be read."""
        try:
            return self._read()
        except OSError:
            return None
