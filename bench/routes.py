"""Benchmark: RouteTable against the raw floor, measured in the same run.

Run with ``.venv/bin/python bench/routes.py [--routes 1000 10000] [--ifaces 100] [--reps 7]``
as root. It creates its own namespaces (a host with `--ifaces` pre-created, oper-up veths
cali0.., their peers in a second namespace) and deletes them afterwards; nothing touches the
root namespace. Every scenario programs the same final kernel state as its floor:

- program N routes: set_routes + apply() of a new RouteTable on an empty table (one read,
  the diff, one `ip -batch`), against `ip -batch` of the same N `route replace` lines;
- restart, nothing to do: a new RouteTable over a table already holding the N routes (one
  read, the diff, no writes), against the bare read `ip -j route show`;
- add 1 route at steady state: one more route through apply() (the netlink path), against
  one pyroute2 `route replace` on an open socket.

Times are medians and p99 over `--reps` repetitions; ratio = median / floor median.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from calico.dataplane.drivers.routetable import RTPROT_CALICO, RouteTable, RouteTarget
from calico.dataplane.kernel import open_netlink
from calico.programs import Runner
from calico.testing.netns import Namespaces

ROW_FORMAT = "{:>7}  {:<28} {:>10} {:>9} {:>9} {:>6}"


@dataclass(frozen=True)
class Row:
    routes: int
    scenario: str
    times: list[float]
    floor: list[float]


def cidr(i: int) -> str:
    return f"198.18.{i // 250}.{i % 250 + 1}/32"


def timed(action: Callable[[], object], reset: Callable[[], object], reps: int) -> list[float]:
    """Runs reset (untimed) then action, `reps` times; returns the action's durations."""
    times = []
    for _ in range(reps):
        reset()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


class Bench:
    def __init__(self, ns: Namespaces, ifaces: int) -> None:
        self.host = ns.add("host")
        peer = ns.add("peer")
        self.runner = Runner(netns=self.host)
        self.ifaces = [f"cali{i}" for i in range(ifaces)]
        adds = "".join(
            f"link add {i} type veth peer name p{n} netns {peer}\nlink set {i} up\n"
            for n, i in enumerate(self.ifaces)
        )
        self.runner.run(["ip", "-batch", "-"], stdin=adds)
        ups = "".join(f"link set p{n} up\n" for n in range(ifaces))
        ns.exec(peer, ["ip", "-batch", "-"], stdin=ups)
        self.factory = functools.partial(open_netlink, self.host)

    def targets(self, n: int) -> dict[str, list[RouteTarget]]:
        by_iface: dict[str, list[RouteTarget]] = {i: [] for i in self.ifaces}
        for i in range(n):
            by_iface[self.ifaces[i % len(self.ifaces)]].append(RouteTarget(cidr(i)))
        return by_iface

    def flush(self) -> None:
        self.runner.run(["ip", "-4", "route", "flush", "table", "254", "proto", str(RTPROT_CALICO)])

    def program(self, targets: dict[str, list[RouteTarget]]) -> RouteTable:
        table = RouteTable(self.runner, self.factory, 4)
        for iface, wanted in targets.items():
            table.set_routes(iface, wanted)
        table.apply()
        return table

    def floor_batch(self, n: int) -> None:
        lines = "".join(
            f"route replace {cidr(i)} dev {self.ifaces[i % len(self.ifaces)]} scope link"
            f" proto {RTPROT_CALICO}\n"
            for i in range(n)
        )
        self.runner.run(["ip", "-4", "-batch", "-"], stdin=lines)

    def floor_read(self) -> None:
        self.runner.run(["ip", "-j", "-4", "route", "show", "table", "254"])


def run(ns: Namespaces, counts: Sequence[int], ifaces: int, reps: int) -> list[Row]:
    bench = Bench(ns, ifaces)
    return [row for n in counts for row in measure(bench, n, reps)]


def measure(bench: Bench, n: int, reps: int) -> list[Row]:
    targets = bench.targets(n)
    floor = timed(lambda: bench.floor_batch(n), bench.flush, reps)
    cold = timed(lambda: bench.program(targets).close(), bench.flush, reps)
    rows = [Row(n, "program N routes", cold, floor)]
    floor = timed(bench.floor_read, lambda: None, reps)
    restart = timed(lambda: bench.program(targets).close(), lambda: None, reps)
    rows.append(Row(n, "restart, nothing to do", restart, floor))
    rows.append(add_one(bench, targets, n, reps))
    bench.flush()
    return rows


def add_one(bench: Bench, targets: dict[str, list[RouteTarget]], n: int, reps: int) -> Row:
    """Steady state: a RouteTable in sync with n routes gets one more, `reps` times."""
    table = bench.program(targets)
    iface = bench.ifaces[0]
    wanted = list(targets[iface])
    extra = iter(range(n, n + 2 * reps + 1))

    def add() -> None:
        wanted.append(RouteTarget(cidr(next(extra))))
        table.set_routes(iface, wanted)
        table.apply()

    add()  # warm-up: opens the netlink socket
    times = timed(add, lambda: None, reps)
    table.close()
    nl: Any = bench.factory()
    index = nl.link_lookup(ifname=iface)[0]

    def raw() -> None:
        dst = cidr(next(extra)).removesuffix("/32")
        nl.route("replace", dst=dst, dst_len=32, oif=index, scope=253, proto=RTPROT_CALICO)

    floor = timed(raw, lambda: None, reps)
    nl.close()
    return Row(n, "add 1 route at steady state", times, floor)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def format_rows(rows: Sequence[Row], reps: int) -> str:
    cells = ["routes", "scenario", "median ms", "p99 ms", "floor ms", "ratio"]
    lines = [f"RouteTable vs floor ({reps} reps each)", ROW_FORMAT.format(*cells)]
    for row in rows:
        median, floor = statistics.median(row.times), statistics.median(row.floor)
        times = (f"{t * 1e3:.2f}" for t in (median, p99(row.times), floor))
        lines.append(ROW_FORMAT.format(row.routes, row.scenario, *times, f"{median / floor:.2f}"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ifaces", type=int, default=100)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    with Namespaces() as ns:
        rows = run(ns, args.routes, args.ifaces, args.reps)
    print(format_rows(rows, args.reps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
