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

The floor, measured in the same run: the same network (`Lab.build_network`, the lab's own
builder) and hosts with plain BIRD on each host instead of calico node (no etcd, Felix or CNI),
peering as calico node does; a new workload namespace wired with a veth, proxy ARP and a /32
route on one host (BIRD's kernel protocol learns it and advertises it), pinged from every other
host. Times are medians and p99 over `--samples` additions; ratio = median / floor median.
Everything runs in namespaces this script creates and removes.

With ``--fabric MODEL`` the lab is the L3 fabric instead of the mesh (lab file `model`, `racks`,
`spines`): `--racks` racks, each a subnet behind an FRR ToR, the ToRs linked to one FRR spine,
each host peering with its ToR only (as-per-rack: the rack's AS, the ToR reflects; as-per-host:
an AS per host, eBGP to the ToR). `--hosts` counts hosts in all racks; host i sits in rack
i mod racks, so the ADDs, made on each host in turn, alternate between racks. Besides the total
(every other host replied), each sample splits into the last reply from a host in the owner's
rack (ToR reflects or re-advertises: one router hop) and from a host in another rack (ToR ->
spine -> ToR -> host: three), for Calico and for the floor, each column with its own ratio.
The fabric's floor is the same fabric: the same racks, ToRs and spine with the same FRR
configuration and timers, the same model and AS numbers, only the hosts are plain BIRD peering
with their ToR. A ratio is then Calico's cost over an identical fabric, the FRR hops included
in both; the mesh keeps its mesh floor (plain BIRD, iBGP full mesh).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
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
from calico.lab.base import wait_for
from calico.lab.bird import bgp_sessions
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.lab.spec import Host, LabSpec, Workload, tor_peer_address

REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")
PING_DEADLINE = 20
SCENARIOS = {"new /32 block": "bench-32", "existing /26 block": "bench-26"}


@dataclass(frozen=True)
class Samples:
    totals: list[float]  # start -> every other host got a reply
    adds: list[float]  # the ADD (floor: wiring) alone; the rest of a total is time after it
    same_rack: list[float] = field(default_factory=list)  # last reply from the owner's rack
    other_racks: list[float] = field(default_factory=list)  # last reply from the other racks

    def record(
        self,
        started: float,
        added: float,
        rack: str | None,
        replies: Sequence[tuple[str | None, float]],
    ) -> None:
        """A sample on a host in `rack` (None: mesh): (rack, first reply) of every other host."""
        self.totals.append(max(t for _, t in replies) - started)
        self.adds.append(added - started)
        if rack is None:
            return
        near = [t for r, t in replies if r == rack]
        far = [t for r, t in replies if r != rack]
        self.same_rack.extend([max(near) - started] if near else [])
        self.other_racks.extend([max(far) - started] if far else [])


@dataclass(frozen=True)
class Row:
    hosts: int
    scenario: str
    calico: Samples
    floor: Samples
    fabric: str | None = None  # None: full mesh; else the L3 fabric's model


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


def calico_samples(lab: Lab, pool: str, samples: int, tag: str) -> Samples:
    hosts = lab.spec.hosts
    out = Samples([], [])
    for k in range(samples):
        owner = hosts[k % len(hosts)]
        pools = [pool] if pool == "bench-32" else []
        started = time.time()
        ws = lab.add_workload(Workload(name=f"{tag}{k}", host=owner.name, ipPools=pools))
        added = time.time()
        assert ws.ipv4 is not None
        others = [(i, h) for i, h in enumerate(hosts) if h != owner]
        replies = first_replies([lab.netns(f"probe{i}") for i, _ in others], ws.ipv4)
        out.record(
            started,
            added,
            owner.rack,
            [(h.rack, t) for (_, h), t in zip(others, replies, strict=True)],
        )
    return out


def run_calico(hosts: int, samples: int, state_root: Path, spec: LabSpec) -> dict[str, Samples]:
    with running_lab(spec, state_root / f"calico-{hosts}") as lab:
        return {name: calico_samples(lab, pool, samples, f"s{i}-")
                for i, (name, pool) in enumerate(SCENARIOS.items())}  # fmt: skip


# -- the floor: the same network, plain BIRD as hosts ----------------------------------------

# calico node's BIRD has `protocol direct` too: without it, BIRD resolves a ToR's next hop
# through the ToR's BGP route to its own rack subnet and installs the routes as unreachable.
BIRD_CONFIG = """
router id {me};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; interface "eth0"; }}
protocol kernel {{ ipv4 {{ import all; export all; }}; learn; scan time 2; merge paths on; }}
template bgp peer {{
  local as {asn}; connect delay time 1; connect retry time 2;
  ipv4 {{ import all; export where net ~ [ 198.19.0.0/16+ ]; next hop self; }};
}}
"""


class Floor:
    """The lab's network (`Lab.build_network`: the bridge, or the racks with the same ToRs,
    spines and FRR configuration) and hosts, with plain BIRD on each host instead of calico
    node (no etcd, Felix or CNI), peering as calico node would: with every other host in the
    mesh, with its ToR in the fabric. `add(k, host)` wires a /32 workload on the host."""

    def __init__(self, spec: LabSpec, directory: Path) -> None:
        self.lab = Lab.create(spec, directory)
        self.hosts = spec.hosts

    def peers(self, host: Host) -> list[tuple[str, int]]:
        """(address, AS) of the host's BGP peers."""
        spec = self.lab.spec
        if host.rack is None:
            return [(h.ipv4, spec.asNumber) for h in self.hosts if h != host]
        tor = spec.host_rack(host).tor
        assert tor is not None
        return [(tor_peer_address(spec.host_rack(host)), tor.asNumber)]

    def build(self) -> None:
        self.lab.build_network()
        for host in self.hosts:
            self.lab.build_host(host)
            ns, directory = self.lab.netns(host.name), self.lab.run_dir(host.name)
            netns.sysctl(ns, {"net.ipv4.ip_forward": "1"})
            asn = self.lab.spec.host_as(host) or self.lab.spec.asNumber
            peers = "".join(f"protocol bgp p{j} from peer {{ neighbor {ip} as {peer_as}; }}\n"
                            for j, (ip, peer_as) in enumerate(self.peers(host)))  # fmt: skip
            (directory / "bird.cfg").write_text(BIRD_CONFIG.format(me=host.ipv4, asn=asn) + peers)
            argv = ["bird", "-f", "-c", str(directory / "bird.cfg"),
                    "-s", str(directory / "bird.ctl")]  # fmt: skip
            bird = procs.spawn(argv, directory / "bird.log", netns=ns)
            self.lab.record_proc(f"bird/{host.name}", bird)
        if wait_for(lambda: None if self._not_established() else True, 30.0, 0.1) is None:
            raise RuntimeError(f"floor: BGP sessions not established: {self._not_established()}")

    def _not_established(self) -> list[str]:
        """Hosts whose BIRD has fewer sessions established than it has peers."""
        up = {h.name: bgp_sessions(self.lab.run_dir(h.name) / "bird.ctl") or [] for h in self.hosts}
        return [h.name for h in self.hosts
                if sum(s.established for s in up[h.name]) < len(self.peers(h))]  # fmt: skip

    def add(self, k: int, owner: Host, out: Samples) -> None:
        """Wire workload k on `owner` (veth, proxy ARP, /32 route), until every other host
        reaches it."""
        address = str(ipaddress.ip_address("198.19.128.1") + k)
        started = time.time()
        wl = self.lab.add_netns(f"w{k}")
        host = self.lab.netns(owner.name)
        netns.veth(host, f"w{k}", wl, "eth0")
        netns.sysctl(
            host, {f"net.ipv4.conf.w{k}.proxy_arp": "1", f"net.ipv4.neigh.w{k}.proxy_delay": "0"}
        )
        netns.ip_batch(wl, [f"addr add {address}/32 dev eth0", "route add default dev eth0"])
        netns.ip(host, "route", "add", f"{address}/32", "dev", f"w{k}")
        added = time.time()
        others = [h for h in self.hosts if h != owner]
        replies = first_replies([self.lab.netns(h.name) for h in others], address)
        out.record(
            started, added, owner.rack, [(h.rack, t) for h, t in zip(others, replies, strict=True)]
        )


def run_floor(hosts: int, samples: int, state_root: Path, spec: LabSpec) -> Samples:
    floor = Floor(spec, state_root / f"floor-{hosts}")
    out = Samples([], [])
    try:
        floor.build()
        for k in range(samples):
            floor.add(k, spec.hosts[k % hosts], out)
        return out
    finally:
        floor.lab.down()


# -- report ----------------------------------------------------------------------------------


def run(
    host_counts: Sequence[int], samples: int, fabric: str | None = None, racks: int = 2
) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="calico-bench-bgp-") as tmp:
        root = Path(tmp)
        for hosts in host_counts:
            text = lab_file(hosts) if fabric is None else fabric_lab_file(hosts, racks, fabric)
            spec = load_lab(text, "bench lab")
            floor = run_floor(hosts, samples, root, spec)
            for scenario, calico in run_calico(hosts, samples, root, spec).items():
                rows.append(Row(hosts, scenario, calico, floor, fabric))
    return rows


def ms(value: float) -> str:
    return f"{value * 1e3:>6.0f}ms"


def split_columns(calico: Sequence[float], floor: Sequence[float]) -> str:
    """median, p99, floor median and ratio of one of the fabric's split columns."""
    if not calico or not floor:
        return f"{'-':>8} {'-':>8} {'-':>8} {'-':>6}"
    median, floor_median = statistics.median(calico), statistics.median(floor)
    return f"{ms(median)} {ms(p99(calico))} {ms(floor_median)} {median / floor_median:>6.1f}"


def format_rows(rows: Sequence[Row]) -> str:
    head = (f"{'hosts':>5}  {'scenario':<20} {'median':>8} {'p99':>8} {'ADD only':>9}"
            f" {'after ADD':>9} {'floor':>8} {'ratio':>7}")  # fmt: skip
    lines = [head]
    for r in rows:
        c, f = r.calico, r.floor
        median, floor = statistics.median(c.totals), statistics.median(f.totals)
        after = statistics.median(t - a for t, a in zip(c.totals, c.adds, strict=True))
        lines.append(
            f"{r.hosts:>5}  {r.scenario:<20} {ms(median)} {ms(p99(c.totals))}"
            f" {ms(statistics.median(c.adds))}   {ms(after)}   {floor * 1e3:>6.1f}ms"
            f" {median / floor:>7.1f}"
            + (f"  {split_columns(c.same_rack, f.same_rack)}"
               f"  {split_columns(c.other_racks, f.other_racks)}" if r.fabric else "")
        )  # fmt: skip
    if any(r.fabric for r in rows):  # a line above the header names the split columns
        split = f"{'median':>8} {'p99':>8} {'floor':>8} {'ratio':>6}"
        lines[0] += f"  {split}  {split}"
        groups = f"{'':<{len(head)}}  {'--- same rack ---':^33}  {'--- other racks ---':^33}"
        lines.insert(0, groups.rstrip())
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
          f"({args.samples} samples; floor: plain BIRD hosts, veth + /32 route)")  # fmt: skip
    if args.fabric:
        print(f"L3 fabric {args.fabric}: {racks} racks, one spine; hosts in all racks; "
              f"floor: the same racks, ToRs and spine (FRR) with plain BIRD hosts")  # fmt: skip
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
