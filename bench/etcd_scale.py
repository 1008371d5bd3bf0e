"""Benchmark: what N hosts' watches cost a 3-member etcd cluster, and how fast a policy write
reaches every host's calculation graph.

Run: ``.venv/bin/python bench/etcd_scale.py [--hosts 50 200] [--writes 100] [--idle 35]
[--no-bgp] [--order listed host both]`` (about 8 minutes at 50 and 200 hosts, both orders), or
``--smoke`` for a tiny run. Nothing touches the kernel: etcd runs on loopback, the hosts are
threads of this process.

A simulated host is what calico/node runs against etcd, minus the dataplane: its own
EtcdBackend (own connections), Felix's real syncers, CalcFeed, _GraphAdapter and CalcGraph
(calico.felix.daemon.calc_syncers), whose emit records the policy updates it sees, and (unless
--no-bgp) a BGPAgent with its syncers, rendering bird.cfg into a temp dir against a runner that
accepts every command. Each host has one WorkloadEndpoint; one GlobalNetworkPolicy selects
them all. Every write changes that policy's rule and waits until every host's graph has
emitted the update before the next write, so a write's figure is the time from the put to
the last host's emit.

Endpoint order: `host` gives each simulated host the order its components use
(`EtcdConfig.for_host` of its name), `listed` the list as written, every host starting on the
first member (calico-py's order before per-host ordering: the floor for the members' CPU).
`both` runs each scale in both orders, listed first, on the same cluster.

Per scale: sync time (hosts started -> every graph in sync with the policy), etcd's CPU
seconds per member while idle (--idle seconds: at least the 30 s watch idle timeout, so the
watches' probe-and-reopen is in it) and during the writes, RSS, watches and watch streams
per host from etcd's metrics and the watchers on each member, this process's CPU during the
writes (one core = the GIL's ceiling). Floor, in the same run: the same writes with 1 host;
ratio = p99 / floor p99. Each member's CPU per write is also given net of its idle CPU rate
(at a few writes a second the idle share is large), and in `both` the busiest member's over the
busiest one's in listed order at the same scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.bgp.agent import BGPAgent
from calico.calc.graph import CalcGraph
from calico.calc.messages import ActivePolicyUpdate, Message
from calico.datastore.client import ResourceClient
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.syncer import Syncer
from calico.felix.calc_feed import CalcFeed
from calico.felix.daemon import _GraphAdapter, calc_syncers
from calico.felix.health import HealthAggregator
from calico.felix.metrics import FelixMetrics
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.keys import key_of
from calico.programs import CommandResult
from calico.testing.etcd_server import EtcdCluster
from calico.testing.proc import proc_cpu

POLICY = "etcd-scale"
PORT = 1000
ROW = " ".join(f"{{:>{width}}}" for width in (5, 6, 5, 9, 11, 6, 6, 6, 5, 9, 8, 15, 7, 11, 6, 8))


class AcceptAll:
    """The BGP agent's runner: `bird -p` and `birdc configure` succeed, nothing runs."""

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        return CommandResult(0, "Reconfigured" if "configure" in args else "", "")


class Arrivals:
    """Counts hosts whose graph has emitted the policy `target` times; wakes the writer."""

    def __init__(self, hosts: int) -> None:
        self.hosts = hosts
        self.target = 1
        self.arrived = 0
        self.times: list[float] = []
        self.cond = threading.Condition()

    def on_emit(self, count: int) -> None:
        with self.cond:
            if count == self.target:
                self.arrived += 1
                self.times.append(time.perf_counter())
                if self.arrived == self.hosts:
                    self.cond.notify_all()

    def expect(self, target: int) -> None:
        with self.cond:
            self.target, self.arrived, self.times = target, 0, []

    def wait(self, timeout: float = 120.0) -> list[float]:
        with self.cond:
            if not self.cond.wait_for(lambda: self.arrived >= self.hosts, timeout):
                raise RuntimeError(f"{self.arrived}/{self.hosts} hosts got update {self.target}")
            return list(self.times)


class SimHost:
    """One host's syncers and calc graph (and BGP agent), threads of this process."""

    def __init__(
        self, index: int, config: EtcdConfig, arrivals: Arrivals, bgp: Path | None
    ) -> None:
        self.name = f"sim-{index}"
        self.backend = EtcdBackend(config)
        self.count = 0
        self._arrivals = arrivals
        graph = CalcGraph(self.name, self._emit)
        health = HealthAggregator()
        health.register("CalculationGraph", live_timeout=None, reports_ready=True)
        adapter = _GraphAdapter(graph, FelixMetrics(), health, lambda *_: None)
        self.feed = CalcFeed(adapter)
        self.syncers: list[Syncer] = calc_syncers(self.backend, self.feed)
        self.bgp = None
        if bgp is not None:
            self.bgp = BGPAgent(self.backend, self.name, bgp / self.name, runner=AcceptAll())

    def _emit(self, messages: Sequence[Message]) -> None:
        for msg in messages:
            if isinstance(msg, ActivePolicyUpdate) and msg.id.name == POLICY:
                self.count += 1
                self._arrivals.on_emit(self.count)

    def start(self) -> None:
        self.feed.start()
        for syncer in self.syncers:
            syncer.start()
        if self.bgp is not None:
            self.bgp.start()

    def stop(self) -> None:
        self.feed.stop()
        for syncer in self.syncers:
            syncer.stop()
        if self.bgp is not None:
            self.bgp.stop()
        self.backend.close()


# -- etcd members: CPU, memory, watches --------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    return proc_cpu(f"/proc/{pid}/stat")[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric(endpoint: str, name: str) -> float:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{endpoint}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"etcd at {endpoint} reports no {name}")


class Members:
    def __init__(self, cluster: EtcdCluster) -> None:
        self.pids = [m.pid for m in cluster.members if m.pid is not None]
        self.endpoints = cluster.endpoints

    def cpu(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def rss(self) -> list[float]:
        return [rss_mib(pid) for pid in self.pids]

    def watchers(self) -> list[float]:
        return [metric(e, "etcd_debugging_mvcc_watcher_total") for e in self.endpoints]

    def leader(self) -> int:
        """The index of the member the others follow."""
        for index, endpoint in enumerate(self.endpoints):
            backend = EtcdBackend(EtcdConfig(endpoints=(endpoint,)))
            try:
                own, leader = backend.member_status()
            finally:
                backend.close()
            if own == leader:
                return index
        raise RuntimeError("no member is the leader")

    def streams(self) -> float:
        return sum(metric(e, "etcd_debugging_mvcc_watch_stream_total") for e in self.endpoints)


# -- the workload --------------------------------------------------------------------------------


def resource(doc: dict[str, Any]) -> Resource:
    return parse_resource({"apiVersion": "projectcalico.org/v3", **doc})


def endpoint(index: int) -> Resource:
    spec = {
        "node": f"sim-{index}", "orchestrator": "k8s", "pod": f"pod{index}",
        "endpoint": "eth0", "interfaceName": f"cali{index}",
        "ipNetworks": [f"198.18.{index // 250}.{index % 250 + 1}/32"],
    }  # fmt: skip
    meta = {"namespace": "default", "labels": {"app": "bench"}}
    return resource({"kind": "WorkloadEndpoint", "metadata": meta, "spec": spec})


def policy(port: int) -> Resource:
    rule = {"action": "Allow", "protocol": "TCP", "destination": {"ports": [port]}}
    spec = {"selector": "app == 'bench'", "ingress": [rule], "egress": []}
    return resource({"kind": "GlobalNetworkPolicy", "metadata": {"name": POLICY}, "spec": spec})


# -- one scale -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    hosts: int
    order: str
    placed: list[int]  # hosts whose endpoint order starts on each member
    sync: float
    write_times: list[float]
    idle_cpu: list[float]
    idle_seconds: float
    write_cpu: list[float]
    write_seconds: float
    client_cpu: float
    rss: list[float]
    watchers: list[float]  # per member
    streams: float

    def p(self, q: float) -> float:
        ordered = sorted(self.write_times)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Options:
    writes: int
    idle: float
    bgp: bool


def host_config(endpoints: tuple[str, ...], index: int, order: str) -> EtcdConfig:
    """A host's etcd settings: its own order (as calico/node's components make it from
    ETCD_ENDPOINTS) or, for the floor, the list as written."""
    config = EtcdConfig(endpoints=endpoints)
    return config.for_host(f"sim-{index}") if order == "host" else config


def run_scale(
    members: Members, writer: ResourceClient, hosts: int, order: str, opts: Options
) -> Result:
    for i in range(hosts):
        writer.apply(endpoint(i))
    writer.apply(policy(PORT))
    base_watchers, base_streams = members.watchers(), members.streams()
    arrivals = Arrivals(hosts)
    with tempfile.TemporaryDirectory(prefix="calico-etcd-scale-") as tmp:
        configs = [host_config(members.endpoints, i, order) for i in range(hosts)]
        placed = [sum(c.endpoints[0] == e for c in configs) for e in members.endpoints]
        bgp = Path(tmp) if opts.bgp else None
        sims = [SimHost(i, config, arrivals, bgp) for i, config in enumerate(configs)]
        started = time.perf_counter()
        try:
            for sim in sims:
                sim.start()
            arrivals.wait(600)
            sync = time.perf_counter() - started
            time.sleep(2)  # the BGP agents' first render and debounce
            watchers, streams = members.watchers(), members.streams()
            cpu0, t0 = members.cpu(), time.perf_counter()
            time.sleep(opts.idle)
            cpu1, t1 = members.cpu(), time.perf_counter()
            client0 = time.process_time()
            times = []
            for n in range(opts.writes):
                arrivals.expect(n + 2)
                put_at = time.perf_counter()
                writer.apply(policy(PORT + 1 + n))  # calicoctl apply
                times.append(max(arrivals.wait()) - put_at)
            cpu2, t2 = members.cpu(), time.perf_counter()
            client = time.process_time() - client0
            rss = members.rss()
        finally:
            for sim in sims:
                sim.stop()
    for i in range(hosts):
        writer.backend.delete(key_of(endpoint(i)).path)
    return Result(
        hosts, order, placed, sync, times,
        [b - a for a, b in zip(cpu0, cpu1, strict=True)], t1 - t0,
        [b - a for a, b in zip(cpu1, cpu2, strict=True)], t2 - t1,
        client, rss, [w - b for w, b in zip(watchers, base_watchers, strict=True)],
        streams - base_streams,
    )  # fmt: skip


def per_write(r: Result) -> list[float]:
    """etcd CPU ms per write on each member, net of what the member spends idle in as long
    (heartbeats, the watches' probes: at 200 hosts and a few writes a second, a third of it)."""
    return [
        (busy - idle / r.idle_seconds * r.write_seconds) * 1000 / len(r.write_times)
        for busy, idle in zip(r.write_cpu, r.idle_cpu, strict=True)
    ]


def row(r: Result, floor: Result, listed: Result | None) -> str:
    per_host = r.hosts or 1
    idle = sum(r.idle_cpu) / r.idle_seconds if r.idle_seconds else 0.0
    busiest = max(per_write(r))
    return ROW.format(
        r.hosts,
        r.order,
        f"{sum(r.watchers) / per_host:.0f}/{r.streams / per_host:.0f}",
        "/".join(str(n) for n in r.placed),
        "/".join(f"{w:.0f}" for w in r.watchers),
        f"{r.sync:.2f}",
        f"{statistics.median(r.write_times) * 1000:.1f}",
        f"{r.p(0.99) * 1000:.1f}",
        f"{r.p(0.99) / floor.p(0.99):.1f}",
        f"{idle * 100:.1f}%",
        f"{sum(r.write_cpu) * 1000 / len(r.write_times):.1f}",
        "/".join(f"{c:.1f}" for c in per_write(r)),
        f"{busiest / max(per_write(listed)):.2f}" if listed else "-",
        "/".join(f"{m:.0f}" for m in r.rss),
        f"{r.client_cpu / r.write_seconds * 100:.0f}%",
        f"{len(r.write_times) / r.write_seconds:.1f}",
    )


def report(results: Sequence[Result], leader: int) -> None:
    floor = results[0]
    print(
        ROW.format(
            "hosts", "order", "w/s", "placed", "watchers", "sync s", "p50 ms", "p99 ms", "ratio",
            "etcd idle", "ms/write", "net/member", "busiest", "RSS MiB", "client", "writes/s",
        )
    )  # fmt: skip
    for r in results:
        listed = [x for x in results if x.hosts == r.hosts and x.order == "listed"]
        print(row(r, floor, listed[0] if listed else None))
    print(
        "w/s: watchers/watch streams per host (etcd metrics, all members); placed: hosts "
        "whose order starts on each member; watchers: on each member; etcd idle: CPU of all "
        "members while idle, % of one core; ms/write: etcd CPU ms per write, all members; "
        "net/member: each member's, net of its idle CPU; busiest: the busiest member's net "
        "ms/write over the busiest one's in listed order at the same scale; client: this "
        "process's CPU during the writes, % of one core (2 = GIL-free ceiling on this "
        f"{os.cpu_count()}-CPU machine); ratio: p99 over the 1-host floor's; leader: member "
        f"{leader + 1}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--idle", type=float, default=35.0, help="idle window, seconds")
    parser.add_argument("--no-bgp", action="store_true", help="Felix's syncers only")
    parser.add_argument(
        "--order", choices=("listed", "host", "both"), default="both",
        help="endpoint order of the simulated hosts: as listed, per host, or each scale in both",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="2 hosts, 5 writes, 1 s idle")
    args = parser.parse_args(argv)
    hosts, opts = args.hosts, Options(args.writes, args.idle, not args.no_bgp)
    if args.smoke:
        hosts, opts = [2], Options(5, 1.0, opts.bgp)
    orders = ("listed", "host") if args.order == "both" else (args.order,)
    results = []
    with EtcdCluster(3) as cluster:
        members = Members(cluster)
        backend = EtcdBackend(EtcdConfig(endpoints=cluster.endpoints))
        try:
            runs = [(1, orders[0])] + [(n, order) for n in hosts for order in orders]
            for n, order in runs:
                print(f"[{time.strftime('%H:%M:%S')}] {n} hosts, {order} order", file=sys.stderr)
                client = ResourceClient(backend)
                results.append(run_scale(members, client, n, order, opts))
            leader = members.leader()
        finally:
            backend.close()
    report(results, leader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
