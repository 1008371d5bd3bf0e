"""The MTU of each VM tap on this host, for the DHCP agent to pass on to its VM.

networking-calico's agent follows `ip monitor link` and gives each port the MTU of its tap as
a DHCP option (agent/dhcp_agent.py `MTUWatcher`, projectcalico/calico at
87c15906f20c4ca1fda55af92295e7678b0cc0b2). Here a thread subscribes to netlink link events
and, on any of them (and every `resync_interval` seconds, in case one was lost), dumps the
links again and calls `on_change` when the taps' MTUs differ from the last dump: a tap that
appears, changes its MTU or goes. Datagrams are read raw and only count as a wake-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

from pyroute2 import IPRoute

from calico.openstack import keys

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
_RECV_BUFFER = 1 << 20


def tap_mtus(ipr: IPRoute, prefix: str) -> dict[str, int]:
    """{interface name: MTU} of the links whose name starts with `prefix`."""
    found = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        mtu = link.get_attr("IFLA_MTU")
        if isinstance(name, str) and name.startswith(prefix) and isinstance(mtu, int):
            found[name] = mtu
    return found


class TapMtus:
    def __init__(
        self,
        on_change: Callable[[], None],
        prefix: str = keys.INTERFACE_PREFIX,
        resync_interval: float = 30.0,
        retry_delay: float = 1.0,
        netlink: Callable[[], IPRoute] = IPRoute,
    ) -> None:
        """`netlink` opens a socket in the namespace to watch (this process's by default)."""
        self._on_change = on_change
        self._netlink = netlink
        self._prefix = prefix
        self._resync_interval = resync_interval
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._mtus: dict[str, int] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="dhcp-tap-mtus", daemon=True)

    def get(self) -> dict[str, int]:
        with self._lock:
            return dict(self._mtus)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except Exception:
                log.exception("tap MTU watch failed; subscribing again")
                self._stop.wait(self._retry_delay)

    def _session(self) -> None:
        with self._netlink() as sub, self._netlink() as dumper:
            sub.bind(groups=RTMGRP_LINK)  # before the dump, so no change falls in between
            self._refresh(dumper)
            watched = [sub.fileno(), self._wake_r]
            while not self._stop.is_set():
                ready, _, _ = select.select(watched, [], [], self._resync_interval)
                if watched[0] in ready:
                    with contextlib.suppress(BlockingIOError):
                        sub.recv(_RECV_BUFFER)
                if self._stop.is_set():
                    return
                self._refresh(dumper)

    def _refresh(self, dumper: IPRoute) -> None:
        mtus = tap_mtus(dumper, self._prefix)
        with self._lock:
            changed = mtus != self._mtus
            self._mtus = mtus
        if changed:
            self._on_change()
