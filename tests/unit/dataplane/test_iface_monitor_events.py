"""Interface monitor: message parsing, the tracker's state machine, and the thread against a
fake netlink socket (pipe-backed, so select() works) that can fail on demand."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from calico.dataplane.drivers.iface_monitor import (
    IFF_RUNNING,
    AddrEvent,
    InterfaceMonitor,
    InterfaceTracker,
    LinkEvent,
    parse_message,
)

UP = 0x1 | IFF_RUNNING | 0x10000  # IFF_UP | IFF_RUNNING | IFF_LOWER_UP
ADMIN_UP_NO_CARRIER = 0x1


def link_msg(index: int, name: str, flags: int, event: str = "RTM_NEWLINK") -> dict[str, Any]:
    return {"event": event, "index": index, "ifname": name, "flags": flags, "family": 0}


def addr_msg(index: int, addr: str, event: str = "RTM_NEWADDR", **kw: str) -> dict[str, Any]:
    return {"event": event, "index": index, "address": addr, **kw}


class Recorder:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.calls: list[tuple[Any, ...]] = []

    def on_state(self, name: str, up: bool, index: int) -> None:
        with self.cond:
            self.calls.append(("state", name, up, index))
            self.cond.notify_all()

    def on_addrs(self, name: str, addrs: set[str]) -> None:
        with self.cond:
            self.calls.append(("addrs", name, addrs))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"timed out; calls: {self.calls}"


def test_parse_message_covers_links_and_addresses() -> None:
    assert parse_message(link_msg(3, "cali1", UP)) == LinkEvent(3, "cali1", True, True)
    assert parse_message(link_msg(3, "cali1", ADMIN_UP_NO_CARRIER)) == LinkEvent(
        3, "cali1", False, True
    )
    assert parse_message(link_msg(3, "cali1", 0, "RTM_DELLINK")) == LinkEvent(
        3, "cali1", False, False
    )
    assert parse_message(addr_msg(3, "2001:db8::1")) == AddrEvent(3, "2001:db8::1", True)
    peer = addr_msg(3, "198.18.0.9", "RTM_DELADDR", local="198.18.0.1")
    assert parse_message(peer) == AddrEvent(3, "198.18.0.1", False)
    assert parse_message({"event": "RTM_NEWROUTE", "index": 3}) is None


def test_tracker_reports_changes_only() -> None:
    rec = Recorder()
    tracker = InterfaceTracker(rec.on_state, rec.on_addrs)
    tracker.on_event(LinkEvent(3, "cali1", False, True))
    tracker.on_event(LinkEvent(3, "cali1", False, True))  # no change
    tracker.on_event(LinkEvent(3, "cali1", True, True))
    tracker.on_event(AddrEvent(3, "198.18.0.1", True))
    tracker.on_event(AddrEvent(3, "198.18.0.1", True))  # no change
    tracker.on_event(AddrEvent(9, "198.18.0.9", True))  # unknown link: ignored
    tracker.on_event(AddrEvent(3, "198.18.0.1", False))
    tracker.on_event(LinkEvent(3, "cali-renamed", True, True))
    tracker.on_event(LinkEvent(3, "cali-renamed", False, False))
    assert rec.calls == [
        ("state", "cali1", False, 3),
        ("addrs", "cali1", set()),
        ("state", "cali1", True, 3),
        ("addrs", "cali1", {"198.18.0.1"}),
        ("addrs", "cali1", set()),
        ("state", "cali1", False, 0),
        ("addrs", "cali1", set()),
        ("state", "cali-renamed", True, 3),
        ("addrs", "cali-renamed", set()),
        ("state", "cali-renamed", False, 0),
        ("addrs", "cali-renamed", set()),
    ]


def test_a_dump_reports_differences_and_what_has_gone() -> None:
    rec = Recorder()
    tracker = InterfaceTracker(rec.on_state, rec.on_addrs)
    tracker.on_dump(
        [LinkEvent(2, "eth0", True, True), LinkEvent(3, "cali1", True, True)],
        [AddrEvent(2, "198.18.255.1", True)],
    )
    rec.calls.clear()
    tracker.on_dump(
        [LinkEvent(2, "eth0", False, True)],
        [AddrEvent(2, "198.18.255.1", True), AddrEvent(2, "2001:db8::1", True)],
    )
    assert rec.calls == [
        ("state", "eth0", False, 2),
        ("addrs", "eth0", {"198.18.255.1", "2001:db8::1"}),
        ("state", "cali1", False, 0),
        ("addrs", "cali1", set()),
    ]


class FakeMonitorNetlink:
    """Events are queued messages plus one byte on a pipe per datagram."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.r, self.w = os.pipe()
        self.marshal = self
        self.closed = False

    def bind(self, groups: int) -> None:
        self.world.subscribers.append(self)

    def fileno(self) -> int:
        return self.r

    def recv(self, bufsize: int) -> bytes:
        data = os.read(self.r, 1)
        if self.world.fail_next_recv:
            self.world.fail_next_recv = False
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return data

    def parse(self, data: bytes) -> list[Mapping[str, Any]]:
        return [self.world.datagrams.pop(0)]

    def get_links(self) -> Iterable[Mapping[str, Any]]:
        self.world.dumps += 1
        return [link_msg(i, n, f) for i, (n, f) in self.world.links.items()]

    def get_addr(self) -> Iterable[Mapping[str, Any]]:
        return [addr_msg(i, a) for i, addrs in self.world.addrs.items() for a in addrs]

    def close(self) -> None:
        self.closed = True
        os.close(self.r)
        os.close(self.w)


class FakeWorld:
    def __init__(self) -> None:
        self.links: dict[int, tuple[str, int]] = {1: ("lo", UP)}
        self.addrs: dict[int, set[str]] = {1: {"127.0.0.1"}}
        self.subscribers: list[FakeMonitorNetlink] = []
        self.datagrams: list[Mapping[str, Any]] = []
        self.dumps = 0
        self.fail_next_recv = False

    def factory(self) -> FakeMonitorNetlink:
        return FakeMonitorNetlink(self)

    def emit(self, msg: Mapping[str, Any]) -> None:
        self.datagrams.append(msg)
        os.write(self.subscribers[-1].w, b"x")


def test_monitor_thread_follows_events_resubscribes_after_errors_and_stops_promptly() -> None:
    world, rec = FakeWorld(), Recorder()
    # A long retry delay: after ENOBUFS it must resubscribe at once, without waiting.
    monitor = InterfaceMonitor(world.factory, rec.on_state, rec.on_addrs, retry_delay=30.0)
    monitor.start()
    try:
        rec.wait_for(lambda: ("addrs", "lo", {"127.0.0.1"}) in rec.calls)
        world.links[3] = ("cali1", UP)
        world.emit(link_msg(3, "cali1", UP))
        rec.wait_for(lambda: ("state", "cali1", True, 3) in rec.calls)
        world.addrs[3] = {"198.18.0.1"}
        world.fail_next_recv = True  # the event is lost; the resubscription's dump finds it
        world.emit(addr_msg(3, "198.18.0.1"))
        rec.wait_for(lambda: ("addrs", "cali1", {"198.18.0.1"}) in rec.calls)
        assert world.dumps == 2 and world.subscribers[0].closed
    finally:
        started = time.monotonic()
        monitor.stop()
        assert time.monotonic() - started < 1.0
    assert all(sub.closed for sub in world.subscribers)


@pytest.mark.parametrize("fail_first", [1, 3])
def test_monitor_retries_when_it_cannot_subscribe(fail_first: int) -> None:
    world, rec = FakeWorld(), Recorder()
    attempts = []

    def flaky_factory() -> FakeMonitorNetlink:
        attempts.append(1)
        if len(attempts) <= fail_first:
            raise OSError(errno.EMFILE, "Too many open files")
        return world.factory()

    monitor = InterfaceMonitor(flaky_factory, rec.on_state, rec.on_addrs, retry_delay=0.01)
    monitor.start()
    try:
        rec.wait_for(lambda: ("state", "lo", True, 1) in rec.calls)
    finally:
        monitor.stop()


def test_monitor_reports_in_sync_once_after_its_first_dump() -> None:
    world, rec = FakeWorld(), Recorder()
    world.links[3] = ("cali1", UP)

    def in_sync() -> None:
        with rec.cond:
            rec.calls.append(("in-sync",))
            rec.cond.notify_all()

    monitor = InterfaceMonitor(world.factory, rec.on_state, rec.on_addrs, on_in_sync=in_sync)
    monitor.start()
    try:
        rec.wait_for(lambda: ("in-sync",) in rec.calls)
        # Everything in the dump was reported before it.
        before = rec.calls[: rec.calls.index(("in-sync",))]
        assert ("state", "lo", True, 1) in before and ("state", "cali1", True, 3) in before
        world.fail_next_recv = True  # a resubscription dumps again, but is not a new sync
        world.links[4] = ("cali2", UP)
        world.emit(link_msg(4, "cali2", UP))
        rec.wait_for(lambda: ("state", "cali2", True, 4) in rec.calls)
        assert world.dumps == 2 and rec.calls.count(("in-sync",)) == 1
    finally:
        monitor.stop()


@pytest.mark.parametrize(("interval", "rescans"), [(0.05, True), (0.0, False)])
def test_periodic_rescan_every_interval_and_never_for_zero(interval: float, rescans: bool) -> None:
    world, rec = FakeWorld(), Recorder()
    monitor = InterfaceMonitor(world.factory, rec.on_state, rec.on_addrs, resync_interval=interval)
    monitor.start()
    try:
        rec.wait_for(lambda: ("state", "lo", True, 1) in rec.calls)
        time.sleep(0.5)
        assert (world.dumps >= 3) is rescans and (world.dumps == 1) is not rescans
    finally:
        monitor.stop()
