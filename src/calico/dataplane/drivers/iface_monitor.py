"""Interface monitor: netlink link and address events -> per-interface callbacks.

Role: tells the dataplane which interfaces exist, whether they are oper-up and which
addresses they carry, so routes and sysctls are programmed only on interfaces that are up
and host endpoints can follow their addresses. Inputs: a netlink subscription
(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR) plus full dumps. Outputs:
`on_state(name, up, index)` on every change of existence or oper state (`index` 0: the
interface is gone) and `on_addrs(name, addrs)` with the complete address set whenever it
changes (an empty set when the interface goes), and `on_in_sync()` once, after the first
full dump has been reported (until then the consumer does not know every interface).

Invariants: it subscribes before it dumps, so no change between the two is lost (an event
older than the dump is followed by the newer events that superseded it). Any netlink error
(ENOBUFS after a burst, a closed socket, a parse failure) drops both sockets, resubscribes
and dumps again; interfaces missing from a dump are reported gone. "Up" is IFF_RUNNING, the
oper state, not the admin flag. Callbacks run on the monitor's own thread: the consumer
must hand them to the dataplane loop (e.g. through a queue). Felix uses a factory for its
own namespace; tests give one that opens sockets in a test namespace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

_log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFF_RUNNING = 0x40
_RECV_BUFFER = 1 << 20


class MonitorNetlink(Protocol):
    """The slice of a pyroute2 IPRoute the monitor uses: a subscription read as raw datagrams
    (pyroute2's own `get()` can leave datagrams queued where select() cannot see them)."""

    marshal: Any

    def bind(self, groups: int) -> None: ...

    def fileno(self) -> int: ...

    def recv(self, bufsize: int) -> bytes: ...

    def get_links(self) -> Iterable[Mapping[str, Any]]: ...

    def get_addr(self) -> Iterable[Mapping[str, Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkEvent:
    index: int
    name: str
    up: bool
    exists: bool


@dataclass(frozen=True, slots=True)
class AddrEvent:
    index: int
    addr: str
    exists: bool


def parse_message(msg: Mapping[str, Any]) -> LinkEvent | AddrEvent | None:
    """A link or address message as an event; None for anything else."""
    event = msg.get("event")
    if event in ("RTM_NEWLINK", "RTM_DELLINK"):
        up = bool(msg["flags"] & IFF_RUNNING)
        return LinkEvent(msg["index"], msg.get("ifname") or "", up, event == "RTM_NEWLINK")
    if event in ("RTM_NEWADDR", "RTM_DELADDR"):
        addr = msg.get("local") or msg.get("address")  # IFA_LOCAL on point-to-point links
        return AddrEvent(msg["index"], addr, event == "RTM_NEWADDR") if addr else None
    return None


@dataclass
class _Iface:
    name: str
    up: bool
    addrs: set[str] = field(default_factory=set)


class InterfaceTracker:
    """The monitor's state machine: turns events and dumps into change callbacks."""

    def __init__(
        self,
        on_state: Callable[[str, bool, int], None],
        on_addrs: Callable[[str, set[str]], None],
    ) -> None:
        self._on_state = on_state
        self._on_addrs = on_addrs
        self._ifaces: dict[int, _Iface] = {}

    def on_event(self, event: LinkEvent | AddrEvent) -> None:
        if isinstance(event, AddrEvent):
            self._on_addr(event)
        elif event.exists:
            self._on_link(event.index, event.name, event.up)
        else:
            self._gone(event.index)

    def on_dump(self, links: Iterable[LinkEvent], addrs: Iterable[AddrEvent]) -> None:
        """A full dump: everything not in it is gone; every difference is reported."""
        addrs_by_index: dict[int, set[str]] = {}
        for addr in addrs:
            addrs_by_index.setdefault(addr.index, set()).add(addr.addr)
        present = set()
        for link in links:
            present.add(link.index)
            self._on_link(link.index, link.name, link.up)
            self._set_addrs(self._ifaces[link.index], addrs_by_index.get(link.index, set()))
        for index in self._ifaces.keys() - present:
            self._gone(index)

    def _on_link(self, index: int, name: str, up: bool) -> None:
        known = self._ifaces.get(index)
        if known is not None and known.name != name:
            self._gone(index)  # renamed: the old name is gone
            known = None
        if known is None:
            self._ifaces[index] = _Iface(name, up)
            self._on_state(name, up, index)
            self._on_addrs(name, set())
        elif known.up != up:
            known.up = up
            self._on_state(name, up, index)

    def _gone(self, index: int) -> None:
        known = self._ifaces.pop(index, None)
        if known is not None:
            self._on_state(known.name, False, 0)
            self._on_addrs(known.name, set())

    def _on_addr(self, event: AddrEvent) -> None:
        known = self._ifaces.get(event.index)
        if known is None:
            return  # the link's own event (or the next dump) comes first
        addrs = known.addrs | {event.addr} if event.exists else known.addrs - {event.addr}
        self._set_addrs(known, addrs)

    def _set_addrs(self, known: _Iface, addrs: set[str]) -> None:
        if addrs != known.addrs:
            known.addrs = addrs
            self._on_addrs(known.name, set(addrs))


class InterfaceMonitor:
    """Runs an InterfaceTracker on a netlink subscription, in a thread of its own."""

    def __init__(
        self,
        netlink_factory: Callable[[], MonitorNetlink],
        on_state: Callable[[str, bool, int], None],
        on_addrs: Callable[[str, set[str]], None],
        *,
        resync_interval: float = 90.0,
        retry_delay: float = 1.0,
        on_in_sync: Callable[[], None] | None = None,
    ) -> None:
        self._factory = netlink_factory
        self._tracker = InterfaceTracker(on_state, on_addrs)
        self._on_in_sync = on_in_sync  # once, after the first dump has been reported
        self._resync_interval = resync_interval
        self._retry_delay = retry_delay
        self._stop = threading.Event()
        self._dumped = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="iface-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the thread promptly: a byte on the wake-up pipe interrupts its select()."""
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _run(self) -> None:
        """Resubscribes at once after a session that got going (e.g. ENOBUFS after a burst),
        after `retry_delay` when subscribing itself fails."""
        while not self._stop.is_set():
            self._dumped = False
            try:
                self._session()
            except Exception:
                _log.exception("interface monitor failed; resubscribing")
                if not self._dumped:
                    self._stop.wait(self._retry_delay)

    def _session(self) -> None:
        """One subscription: subscribe, dump, then follow events until error or stop."""
        sockets: list[MonitorNetlink] = []
        try:
            sub = self._factory()
            sockets.append(sub)
            sub.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            dumper = self._factory()
            sockets.append(dumper)
            self._dump(dumper)
            if self._on_in_sync is not None:
                self._on_in_sync()
                self._on_in_sync = None
            self._dumped = True
            watched = [sub.fileno(), self._wake_r]
            timeout = self._resync_interval if self._resync_interval > 0 else None  # 0: never
            while not self._stop.is_set():
                ready, _, _ = select.select(watched, [], [], timeout)
                if not ready:
                    self._dump(dumper)  # periodic refresh, in case an event was missed
                elif watched[0] in ready:
                    for msg in sub.marshal.parse(sub.recv(_RECV_BUFFER)):
                        event = parse_message(msg)
                        if event is not None:
                            self._tracker.on_event(event)
        finally:
            for sock in sockets:
                with contextlib.suppress(Exception):
                    sock.close()

    def _dump(self, dumper: MonitorNetlink) -> None:
        links = [e for e in map(parse_message, dumper.get_links()) if isinstance(e, LinkEvent)]
        addrs = [e for e in map(parse_message, dumper.get_addr()) if isinstance(e, AddrEvent)]
        self._tracker.on_dump(links, addrs)
