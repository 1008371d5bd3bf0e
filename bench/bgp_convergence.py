"""Benchmark P9: BGP convergence, from a workload's CNI ADD until every other host reaches it.

Run with ``.venv/bin/python bench/bgp_convergence.py [--hosts 2 4 8] [--samples 7]
[--fabric as-per-rack|as-per-host [--racks 2]]`` as root.
For each host count it builds a lab (`calico.lab`: etcd, `calico node run` per host, BIRD,
full mesh) with one probe workload per host, then repeatedly attaches a new workload through
the CNI plugin, on each host in turn, and pings it from the probe workload of every other host
(`ping -D -i 0.002`, one echo every 2 ms until the first reply; ping is started again when an
ICMP error ended it). A sample is the time from the start of the ADD to the last host's first
reply. Two scenarios:

- new block: the workload's address comes from a /32-block pool, so every ADD claims a new
  IPAM block, which the node's BGP agent renders into BIRD and BIRD advertises to every peer;
- existing block: the address comes from the host's already advertised /26 block, so only
  the owning host's route (CNI, Felix) has to appear.

The floor, measured in the same run: the same number of plain BIRD namespaces (iBGP full
mesh, kernel `learn`), a new workload namespace wired with a veth and a /32 route on one of
them, pinged from every other one. Times are medians and p99 over `--samples` additions;
ratio = median / floor median. Everything runs in namespaces this script creates and removes.

With ``--fabric MODEL`` the lab is the L3 fabric instead of the mesh (lab file `model`, `racks`,
`spines`): `--racks` racks, each a subnet behind an FRR ToR, the ToRs linked to one FRR spine,
each host peering with its ToR only (as-per-rack: the rack's AS, the ToR reflects; as-per-host:
an AS per host, eBGP to the ToR). `--hosts` counts hosts in all racks; host i sits in rack
i mod racks, so the ADDs, made on each host in turn, alternate between racks. Besides the total
(every other host replied), each sample splits into the last reply from a host in the owner's
rack (ToR reflects or re-advertises: one router hop) and from a host in another rack (ToR ->
spine -> ToR -> host: three). The floor is the same mesh floor with the same host count: the
time for a plain BIRD route to reach a directly peered host. It is not a fabric floor (no FRR
in it), so the ratio is the cost of Calico plus the fabric's extra hops over a one-hop BGP
path; the same-rack and other-racks columns show what the hops add.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from calico import programs
from calico.lab import netns, procs
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.lab.spec import Workload

REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")
PING_DEADLINE = 20
SCENARIOS = {"new /32 block": "bench-32", "existing /26 block": "bench-26"}


@dataclass(frozen=True)
class Row:
    hosts: int
    scenario: str
    totals: list[float]  # ADD start -> every other host got a reply
    adds: list[float]  # the ADD alone (the rest of a total is time after the ADD returned)
    floor: list[float]
    fabric: str | None = None  # None: full mesh; else the L3 fabric's model
    same_rack: list[float] = field(default_factory=list)  # last reply from the owner's rack
    other_racks: list[float] = field(default_factory=list)  # last reply from the other racks


def ping_from(ns: str, address: str, deadline: int) -> programs.Popen[str]:
    argv = ["ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", "0.002", "-c", "1",
            "-w", str(deadline), address]  # fmt: skip
    return programs.start(argv, stdout=programs.PIPE, stderr=programs.STDOUT, text=True)


def first_replies(sources: Sequence[str], address: str) -> list[float]:
    """Wall-clock time of the first reply to a ping from each namespace (error if one got none
    within PING_DEADLINE). ping stops at the first ICMP error, e.g. Net Unreachable from a ToR
    that has no route yet, so a pinger that ended without a reply is started again."""
    deadline = time.monotonic() + PING_DEADLINE
    pingers = {ns: ping_from(ns, address, PING_DEADLINE) for ns in sources}
    times: dict[str, float] = {}
    try:
        while len(times) < len(pingers):
            for ns, pinger in list(pingers.items()):
                if ns in times or pinger.poll() is None:
                    continue
                out, _ = pinger.communicate()
                stamps = [float(m.group(1)) for ln in out.splitlines() if (m := REPLY.match(ln))]
                left = deadline - time.monotonic()
                if stamps:
                    times[ns] = stamps[0]
                elif left > 0:
                    pingers[ns] = ping_from(ns, address, math.ceil(left))
                else:
                    raise RuntimeError(f"{ns}: no reply within {PING_DEADLINE}s:\n{out}")
            time.sleep(0.001)
    finally:
        for pinger in pingers.values():
            if pinger.poll() is None:
                pinger.kill()
                pinger.wait()
    return [times[ns] for ns in sources]


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# -- calico-py: a lab ------------------------------------------------------------------------


def lab_file(hosts: int) -> str:
    doc = {
        "name": "bench",
        "fabric": {"ipv4": "198.18.0.0/24"},
        "pools": [
            {"name": "bench-26", "cidr": "198.19.0.0/18", "blockSize": 26},
            {"name": "bench-32", "cidr": "198.19.64.0/20", "blockSize": 32,
             "assignmentMode": "Manual"},
        ],
        "hosts": [{"name": f"h{i}", "ipv4": f"198.18.0.{10 + i}"} for i in range(hosts)],
        "workloads": [{"name": f"probe{i}", "host": f"h{i}"} for i in range(hosts)],
    }  # fmt: skip
    return yaml.safe_dump(doc)


def fabric_lab_file(hosts: int, racks: int, model: str) -> str:
    """`hosts` hosts round-robin over `racks` racks, one spine; the mesh lab's pools."""
    if not 1 <= racks <= min(hosts, 9):  # rack r is 198.18.(1 + r).0/24
        raise ValueError(f"--racks {racks}: needs 1 to min(--hosts, 9) racks")
    doc = yaml.safe_load(lab_file(hosts))
    per_host_as = model == "as-per-host"
    doc["hosts"] = [
        {
            "name": f"h{i}",
            "rack": f"r{i % racks}",
            "ipv4": f"198.18.{1 + i % racks}.{11 + i // racks}",
        }
        | ({"asNumber": 65201 + i} if per_host_as else {})
        for i in range(hosts)
    ]
    doc |= {
        "model": model,
        "spines": [{"name": "spine", "asNumber": 65100}],
        "racks": [{"name": f"r{r}", "subnet": f"198.18.{1 + r}.0/24",
                   "tor": {"name": f"tor{r}", "asNumber": 65001 + r}} for r in range(racks)],
    }  # fmt: skip
    return yaml.safe_dump(doc)


@dataclass(frozen=True)
class Samples:
    totals: list[float]
    adds: list[float]
    same_rack: list[float]
    other_racks: list[float]


def calico_samples(lab: Lab, pool: str, samples: int, tag: str) -> Samples:
    hosts = [h.name for h in lab.spec.hosts]
    rack = {h.name: h.rack for h in lab.spec.hosts}
    totals, adds, same_rack, other_racks = [], [], [], []
    for k in range(samples):
        owner = hosts[k % len(hosts)]
        pools = [pool] if pool == "bench-32" else []
        started = time.time()
        ws = lab.add_workload(Workload(name=f"{tag}{k}", host=owner, ipPools=pools))
        added = time.time()
        assert ws.ipv4 is not None
        others = [(i, h) for i, h in enumerate(hosts) if h != owner]
        sources = [lab.netns_of(f"probe{i}") for i, _ in others]
        replies = first_replies(sources, ws.ipv4)
        totals.append(max(replies) - started)
        adds.append(added - started)
        if lab.spec.racks:
            near = [t for (_, h), t in zip(others, replies, strict=True) if rack[h] == rack[owner]]
            far = [t for (_, h), t in zip(others, replies, strict=True) if rack[h] != rack[owner]]
            same_rack += [max(near) - started] if near else []
            other_racks += [max(far) - started] if far else []
    return Samples(totals, adds, same_rack, other_racks)


def run_calico(hosts: int, samples: int, state_root: Path, text: str) -> dict[str, Samples]:
    spec = load_lab(text, "bench lab")
    with running_lab(spec, state_root / f"calico-{hosts}") as lab:
        return {name: calico_samples(lab, pool, samples, f"s{i}-")
                for i, (name, pool) in enumerate(SCENARIOS.items())}  # fmt: skip


# -- the floor: plain BIRD namespaces --------------------------------------------------------

BIRD_CONFIG = """
router id {me};
protocol device {{ scan time 2; }}
protocol kernel {{ ipv4 {{ import all; export all; }}; learn; scan time 2; merge paths on; }}
template bgp mesh {{
  local as 64512; connect delay time 1; connect retry time 2;
  ipv4 {{ import all; export where net ~ [ 198.19.0.0/16+ ]; next hop self; }};
}}
"""


class Floor:
    """N namespaces with BIRD on a bridge; `add(k, i)` wires a /32 workload on host i."""

    def __init__(self, hosts: int, directory: Path) -> None:
        self.prefix = f"bfl{secrets.token_hex(2)}"
        self.dir = directory
        self.namespaces: list[str] = []
        self.procs: list[procs.Proc] = []
        self.hosts = [f"{self.prefix}-h{i}" for i in range(hosts)]
        self.ips = [f"198.18.0.{10 + i}" for i in range(hosts)]

    def _ns(self, name: str) -> str:
        self.namespaces.append(name)
        netns.add(name)
        return name

    def build(self) -> None:
        fabric = self._ns(f"{self.prefix}-fabric")
        netns.ip_batch(fabric, ["link add br0 type bridge", "link set br0 up"])
        for i, (host, ip) in enumerate(zip(self.hosts, self.ips, strict=True)):
            self._ns(host)
            netns.veth(fabric, f"p{i}", host, "eth0")
            netns.ip(fabric, "link", "set", f"p{i}", "master", "br0")
            netns.ip_batch(host, [f"addr add {ip}/24 dev eth0", "route add default dev eth0"])
            netns.sysctl(host, {"net.ipv4.ip_forward": "1"})
            peers = "".join(f"protocol bgp p{j} from mesh {{ neighbor {peer} as 64512; }}\n"
                            for j, peer in enumerate(self.ips) if peer != ip)  # fmt: skip
            cfg = self.dir / f"bird-{i}.cfg"
            cfg.write_text(BIRD_CONFIG.format(me=ip) + peers)
            argv = ["bird", "-f", "-c", str(cfg), "-s", str(self.dir / f"bird-{i}.ctl")]
            self.procs.append(procs.spawn(argv, self.dir / f"bird-{i}.log", netns=host))
        self._wait_established()

    def _wait_established(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for i in range(len(self.hosts)):
            while True:
                out = netns.run(["birdc", "-s", str(self.dir / f"bird-{i}.ctl"), "show",
                                 "protocols"], check=False).stdout  # fmt: skip
                if out.count("Established") == len(self.hosts) - 1:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"floor BIRD {i}: sessions not established:\n{out}")
                time.sleep(0.1)

    def add(self, k: int, owner: int) -> float:
        """Wire workload k on host `owner`; returns the time until every other host reaches it."""
        address = str(ipaddress.ip_address("198.19.128.1") + k)
        started = time.time()
        wl = self._ns(f"{self.prefix}-w{k}")
        host = self.hosts[owner]
        netns.veth(host, f"w{k}", wl, "eth0")
        netns.sysctl(
            host, {f"net.ipv4.conf.w{k}.proxy_arp": "1", f"net.ipv4.neigh.w{k}.proxy_delay": "0"}
        )
        netns.ip_batch(wl, [f"addr add {address}/32 dev eth0", "route add default dev eth0"])
        netns.ip(host, "route", "add", f"{address}/32", "dev", f"w{k}")
        sources = [h for i, h in enumerate(self.hosts) if i != owner]
        return max(first_replies(sources, address)) - started

    def close(self) -> None:
        procs.stop(self.procs, timeout=5)
        for name in reversed(self.namespaces):
            netns.delete(name)


def run_floor(hosts: int, samples: int, state_root: Path) -> list[float]:
    directory = state_root / f"floor-{hosts}"
    directory.mkdir(parents=True)
    floor = Floor(hosts, directory)
    try:
        floor.build()
        return [floor.add(k, k % hosts) for k in range(samples)]
    finally:
        floor.close()


# -- report ----------------------------------------------------------------------------------


def run(
    host_counts: Sequence[int], samples: int, fabric: str | None = None, racks: int = 2
) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="calico-bench-bgp-") as tmp:
        root = Path(tmp)
        for hosts in host_counts:
            text = lab_file(hosts) if fabric is None else fabric_lab_file(hosts, racks, fabric)
            floor = run_floor(hosts, samples, root)
            for scenario, s in run_calico(hosts, samples, root, text).items():
                rows.append(Row(hosts, scenario, s.totals, s.adds, floor, fabric, s.same_rack,
                                s.other_racks))  # fmt: skip
    return rows


def median_p99(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>8} {'-':>8}"
    return f"{statistics.median(values) * 1e3:>6.0f}ms {p99(values) * 1e3:>6.0f}ms"


def format_rows(rows: Sequence[Row]) -> str:
    head = (f"{'hosts':>5}  {'scenario':<20} {'median':>8} {'p99':>8} {'ADD only':>9}"
            f" {'after ADD':>9} {'floor':>8} {'ratio':>7}")  # fmt: skip
    lines = [head]
    for r in rows:
        floor = statistics.median(r.floor)
        median = statistics.median(r.totals)
        add = statistics.median(r.adds)
        after = statistics.median(t - a for t, a in zip(r.totals, r.adds, strict=True))
        lines.append(
            f"{r.hosts:>5}  {r.scenario:<20} {median * 1e3:>6.0f}ms {p99(r.totals) * 1e3:>6.0f}ms"
            f" {add * 1e3:>7.0f}ms {after * 1e3:>7.0f}ms {floor * 1e3:>6.1f}ms"
            f" {median / floor:>7.1f}"
            + (f"  {median_p99(r.same_rack)}  {median_p99(r.other_racks)}" if r.fabric else "")
        )
    if any(r.fabric for r in rows):
        lines[0] += f"  {'same rack  p99':>17}  {'other racks  p99':>17}"
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--fabric", choices=["as-per-rack", "as-per-host"])
    parser.add_argument("--racks", type=int, help="with --fabric (default 2)")
    args = parser.parse_args(argv)
    if args.fabric is None and args.racks is not None:
        parser.error("--racks needs --fabric")
    racks = 2 if args.racks is None else args.racks
    if args.fabric and not 1 <= racks <= min(*args.hosts, 9):
        parser.error(f"--racks {racks}: needs 1 to min(--hosts, 9) racks")
    rows = run(args.hosts, args.samples, args.fabric, racks)
    print(f"BGP convergence: CNI ADD start -> first reply on every other host "
          f"({args.samples} samples; floor: plain BIRD namespaces, veth + /32 route)")  # fmt: skip
    if args.fabric:
        print(f"L3 fabric {args.fabric}: {racks} racks, one spine; hosts in all racks; "
              f"floor: the mesh floor (one BGP hop, no FRR)")  # fmt: skip
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
