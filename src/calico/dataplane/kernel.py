"""The only door to the kernel: commands (iptables-restore, ipset, ip -batch, sysctl), run
through a `calico.programs.CommandRunner`, and netlink (pyroute2, or a plain socket for the
nftables generation), optionally inside a named network namespace.

Felix itself runs inside the namespace it manages and uses `netns=None`; tests drive the
same code from outside with `netns="<name>"` (and `programs.Runner(netns=...)`), so no test
ever programs the root namespace.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from calico.dataplane.drivers.nft_generation import NftGeneration

if TYPE_CHECKING:
    from pyroute2 import IPRoute

_log = logging.getLogger(__name__)
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def open_netlink(netns: str | None = None) -> IPRoute:
    """A pyroute2 IPRoute socket in the current (or the named) network namespace.

    pyroute2 is imported by the first call, not by importers of this module: its package
    loads all of it (~0.2 s of CPU), which Felix's start then pays on the interface
    monitor's thread, while its syncers wait for the datastore, not before they start."""
    from pyroute2 import IPRoute

    return IPRoute(netns=netns) if netns else IPRoute()


def nft_generation(netns: str | None = None) -> Callable[[], int] | None:
    """A reader of the nftables generation of the current (or the named) namespace, or None
    if this kernel offers none (Felix then re-reads the tables on every refresh)."""
    try:
        reader = NftGeneration(in_netns(netns, NftGeneration.open_socket) if netns else None)
        reader.read()
    except OSError as exc:
        _log.warning("cannot read the nftables generation (%s): full iptables refreshes", exc)
        return None
    return reader.read


def in_netns(netns: str, make: Callable[[], T]) -> T:
    """`make()` on a short-lived thread that joined /run/netns/<netns>: a socket keeps the
    namespace it was created in (so do /proc/sys/net files opened there), and the process
    never leaves its own."""
    made: list[T] = []
    failed: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            made.append(make())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=body, name="netns-socket")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]
