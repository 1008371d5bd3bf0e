"""InterfaceMonitor on a real netlink subscription inside a namespace created here."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable

import pytest

from calico.dataplane.drivers.iface_monitor import AddrEvent, InterfaceMonitor, parse_message
from calico.dataplane.drivers.netlink_dump import LeanDumps
from calico.dataplane.kernel import open_netlink
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


class Recorder:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.states: dict[str, tuple[bool, int]] = {}
        self.addrs: dict[str, set[str]] = {}

    def on_state(self, name: str, up: bool, index: int) -> None:
        with self.cond:
            self.states[name] = (up, index)
            self.cond.notify_all()

    def on_addrs(self, name: str, addrs: set[str]) -> None:
        with self.cond:
            self.addrs[name] = addrs
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(predicate, timeout)
            assert ok, f"timed out; states {self.states}, addrs {self.addrs}"


def test_monitor_sees_links_and_addresses_come_and_go(netns: Namespaces) -> None:
    host, peer = netns.add("host"), netns.add("peer")
    rec = Recorder()
    factory = functools.partial(open_netlink, host)
    monitor = InterfaceMonitor(lambda: LeanDumps(factory()), rec.on_state, rec.on_addrs)
    monitor.start()

    def ip(*args: str, where: str = host) -> None:
        netns.exec(where, ["ip", *args])

    def state(name: str) -> tuple[bool, int] | None:
        return rec.states.get(name)

    try:
        rec.wait_for(lambda: state("lo") is not None and "127.0.0.1" in rec.addrs["lo"])
        ip("link", "add", "cali1", "type", "veth", "peer", "name", "p1", "netns", peer)
        out = netns.exec(host, ["ip", "-j", "link", "show", "cali1"]).stdout
        index = json.loads(out)[0]["ifindex"]
        rec.wait_for(lambda: state("cali1") == (False, index))
        ip("link", "set", "cali1", "up")
        ip("link", "set", "p1", "up", where=peer)
        rec.wait_for(lambda: state("cali1") == (True, index))
        ip("addr", "add", "198.18.0.1/32", "dev", "cali1")
        ip("-6", "addr", "add", "2001:db8::1/128", "dev", "cali1", "nodad")
        rec.wait_for(lambda: {"198.18.0.1", "2001:db8::1"} <= rec.addrs["cali1"])
        ip("addr", "del", "198.18.0.1/32", "dev", "cali1")
        rec.wait_for(lambda: "198.18.0.1" not in rec.addrs["cali1"])
        ip("link", "set", "p1", "down", where=peer)  # carrier lost: admin-up, oper-down
        rec.wait_for(lambda: state("cali1") == (False, index))
        ip("link", "del", "cali1")
        rec.wait_for(lambda: state("cali1") == (False, 0) and rec.addrs["cali1"] == set())
    finally:
        started = time.monotonic()
        monitor.stop()
        assert time.monotonic() - started < 1.0


def test_lean_dumps_agree_with_pyroute2(netns: Namespaces) -> None:
    host = netns.add("host")
    lines = [f"link add c{i} type veth peer name p{i}" for i in range(50)]
    lines += ["link set lo up", "link set c1 up", "link set p1 up", "addr add 198.18.0.1/24 dev c1"]
    lines += ["addr add 2001:db8::1/64 dev c1", "addr add 198.18.5.5 peer 198.18.5.6 dev c2"]
    netns.exec(host, ["ip", "-batch", "-"], stdin="\n".join(lines) + "\n")
    plain, lean = open_netlink(host), LeanDumps(open_netlink(host))
    try:
        for _ in range(2):  # the lean socket can dump again
            for dump in ("get_links", "get_addr"):
                expected = [parse_message(m) for m in getattr(plain, dump)()]
                assert [parse_message(m) for m in getattr(lean, dump)()] == expected
        assert any(isinstance(e, AddrEvent) and e.addr == "198.18.5.5" for e in expected)
    finally:
        plain.close()
        lean.close()
