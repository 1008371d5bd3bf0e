"""Churn rate (P4): endpoint and policy updates per second on one real Felix host, Felix's CPU,
the dataplane's lag and iptables-restores per apply, against a floor measured in the same run.

Run as root: ``.venv/bin/python bench/churn_rate.py [--rate 50 100 150 200] [--seconds 60]``.
The host and the changes are bench/churn.py's (tests/fv/churn_host.py: real etcd, a real Felix
process with default settings plus its Prometheus endpoint, 4 baseline workloads and a policy;
calico.testing.churn: rounds that create, then delete, --endpoints workload endpoints and
--policies each of network sets, profiles and policies, interleaved), here with the veths made
up front (the CNI plugin's work, not Felix's) and no conntrack entries. For each rate, for
--seconds:

- updates/s: datastore writes achieved;
- Felix CPU: /proc/<pid>/stat from the first write until the last route is in the kernel, its
  threads plus the programs it ran (iptables-restore, ipset, ip, conntrack), % of one core;
- lag: for every endpoint write, from just before the write to the kernel adding or removing
  its route (`ip monitor`, stamped on arrival); routes are the last step of an apply, so this
  is the lag of everything before them in the queue too. Writes superseded before their route
  changed (Felix coalesced an add and its delete) are counted, and the observer's own CPU is
  reported;
- restores per apply: Felix's felix_iptables_restore_calls over
  felix_int_dataplane_apply_time_seconds_count, across the window (8 tables: raw, mangle,
  nat, filter for IPv4 and IPv6, so at most 8 means at most 1 per table per apply);
- floor: the same changes at the same rate, applied directly into a clone of Felix's kernel
  state (its IP sets and filter tables) in a floor namespace with the same veths, batched
  into as many applies as Felix made in the window. Per apply: the route changes through one
  long-lived `ip -batch`, one iptables-restore and one ip6tables-restore --noflush of the
  chains that changed (each endpoint's own chains copied from Felix's for a baseline
  workload, plus a jump to each policy selecting it, so a policy change rewrites them, as
  Felix did before policy groups (now the second and later policies of one selector change
  only their group's chain: the floor does more than Felix there); the dispatch chains;
  two chains per profile or policy copied from Felix's chain of the baseline policy), one
  `ipset restore` for the network sets' IP sets. The texts are made before the window: the
  floor's CPU is the programs' and the pacing thread's. It leaves out what Felix does
  besides: the datastore watch, the calculation graph, the selector IP sets' members.

Targets (P4 in the design's benchmark list): >= 150 updates/s for 60 s with Felix at
<= 25 % of a core, lag never above 1 s, <= 1 restore per table per apply. The table is
printed and written into docs/benchmarks.md between the `churn-rate` markers unless
--no-write.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.dataplane.drivers.iptables_render import chain_lines
from calico.rules.config import RulesConfig
from calico.rules.dispatch import workload_dispatch_chains
from calico.testing.churn import Churner, RouteLag, Step, churn_ip
from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces
from calico.testing.proc import proc_cpu

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the FV host (tests/fv), reused as it is
from tests.fv.churn_host import BASELINE_ENDPOINTS, baseline, churner, settle  # noqa: E402
from tests.fv.conftest import Cluster, FelixHost  # noqa: E402
from tests.fv.test_metrics import samples, scrape  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "churn-rate"
METRICS_ENV = {"FELIX_PROMETHEUSMETRICSENABLED": "true", "FELIX_PROMETHEUSMETRICSHOST": "127.0.0.1"}
TABLES = 8  # raw, mangle, nat, filter; IPv4 and IPv6
CPU_GOAL, LAG_GOAL, RATE_GOAL = 25.0, 1.0, 150.0
THREADS = 32  # writers: etcd's writes slow down under the machine's load, the pace must not
DRAIN = 10.0  # s after the last write for the last routes to change
TEMPLATE_IFACE = "calib0"  # a baseline workload: its chains are the floor's endpoint chains
FAMILIES = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}


@dataclass(frozen=True, slots=True)
class FelixRun:
    target: float
    updates: int
    seconds: float  # first write to the last route change (or the drain cap)
    cpu_own: float  # % of one core
    cpu_programs: float
    lags: list[float]
    superseded: int
    unresolved: int
    observer_cpu: float
    applies: int
    restores: int
    ipset_calls: int
    apply_seconds: float  # summed over the applies
    load: float  # the machine's 1-minute load average at the window's end

    @property
    def cpu(self) -> float:
        return self.cpu_own + self.cpu_programs


@dataclass(frozen=True, slots=True)
class FloorRun:
    updates: int
    seconds: float
    applies: int
    cpu: float  # % of one core: programs and the pacing thread


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def counters(cluster: Cluster, host: FelixHost) -> dict[str, float]:
    """Felix's unlabelled metrics, scraped from its Prometheus endpoint."""
    return {
        name: v for (name, labels), v in samples(scrape(cluster, host.netns)).items() if not labels
    }


def measure_felix(
    cluster: Cluster, host: FelixHost, churn: Churner, lag: RouteLag, rate: float, seconds: float
) -> FelixRun:
    assert host.proc is not None
    stat = f"/proc/{host.proc.pid}/stat"
    before = counters(cluster, host)
    lag.reset()
    (own0, kids0), seen0, t0 = proc_cpu(stat), lag.cpu(), time.monotonic()
    done = churn.churn(seconds, rate, threads=THREADS)
    while lag.outstanding() and time.monotonic() - t0 < done.seconds + DRAIN:
        time.sleep(0.05)
    (own1, kids1), seen1, t1 = proc_cpu(stat), lag.cpu(), time.monotonic()
    unresolved = lag.outstanding()
    after = counters(cluster, host)
    delta = {k: int(after[k] - before.get(k, 0)) for k in after}
    span = t1 - t0
    return FelixRun(
        rate, done.changes, span, 100 * (own1 - own0) / span, 100 * (kids1 - kids0) / span,
        list(lag.lags), lag.superseded, unresolved, 100 * (seen1 - seen0) / span,
        delta["felix_int_dataplane_apply_time_seconds_count"],
        delta["felix_iptables_restore_calls"], delta["felix_ipset_calls"],
        after["felix_int_dataplane_apply_time_seconds_sum"]
        - before["felix_int_dataplane_apply_time_seconds_sum"],
        os.getloadavg()[0],
    )  # fmt: skip


class Floor:
    """A namespace holding a copy of Felix's IP sets and filter tables and the same veths,
    into which the churn's kernel changes are written directly."""

    def __init__(self, ns: Namespaces, felix: FelixHost, churn: Churner) -> None:
        self.ns, self.churn = ns, churn
        self.netns = ns.add("floor")
        veths = "".join(
            f"link add calich{i} type veth peer name fp{i}\nlink set calich{i} up\n"
            f"link set fp{i} up\n"
            for i in range(churn.endpoints)
        )
        ns.exec(self.netns, ["ip", "-batch", "-"], stdin=veths)
        ns.exec(self.netns, ["ipset", "restore"], stdin=felix.exec(["ipset", "save"]).stdout)
        self.chains: dict[int, dict[str, list[str]]] = {}
        for family, (save, restore) in FAMILIES.items():
            text = felix.exec([save, "-t", "filter"]).stdout
            ns.exec(self.netns, [restore], stdin=text)
            self.chains[family] = _chains(text)
        self.cfg = RulesConfig()
        self._routes = programs.start(
            ["ip", "-n", self.netns, "-force", "-batch", "-"],
            stdin=programs.PIPE,
            text=True,
            new_session=True,
        )

    def close(self) -> None:
        if self._routes.poll() is None:
            self._routes.kill()
        self._routes.wait(timeout=10)

    def desired(self, endpoints: set[int], parts: set[tuple[int, int]]) -> dict[str, object]:
        """Kernel state for the churned items present: chains per family, routes, IP sets.
        A policy present adds a jump to its chains to the endpoint chains it selects (churned
        policy i selects slot i % 4, as calico.testing.churn labels them), so that, as in
        Felix, a policy change rewrites the chains of the endpoints it selects."""
        state: dict[str, object] = {}
        slots = {
            **{f"calib{b}": b % 4 for b in range(BASELINE_ENDPOINTS)},
            **{f"calich{e}": e % 4 for e in endpoints},
        }
        policies = sorted(i for i, part in parts if part == 2)
        for family, chains in self.chains.items():
            ours = {n: ls for n, ls in chains.items() if TEMPLATE_IFACE in n}
            pi_name = next(n for n in chains if n.startswith("cali-pi-"))
            for iface, slot in slots.items():
                for name, lines in ours.items():
                    new = name.replace(TEMPLATE_IFACE, iface)
                    kind = "pi" if name.startswith("cali-tw-") else "po"
                    jumps = [f"-A {new} -j cali-{kind}-floor{i}" for i in policies if i % 4 == slot]
                    state[f"{family} {new}"] = [
                        *(ln.replace(TEMPLATE_IFACE, iface) for ln in lines),
                        *jumps,
                    ]
            for i, part in parts:
                for kind in ("pri", "pro") if part == 1 else ("pi", "po") if part == 2 else ():
                    new = f"cali-{kind}-floor{i}"
                    state[f"{family} {new}"] = [ln.replace(pi_name, new) for ln in chains[pi_name]]
            for chain in workload_dispatch_chains(self.cfg, slots):
                state[f"{family} {chain.name}"] = chain_lines(chain, chain.rule_hashes())
        for i in endpoints:
            state[f"route {churn_ip(i)}/32 dev calich{i}"] = True
        for i, part in parts:
            if part == 0:
                state[f"ipset {i}"] = True
        return state

    def plan(
        self, steps: Sequence[Step], rate: float, applies: int
    ) -> list[tuple[str, dict[int, str], str]]:
        """Per apply: the route batch, the restore text per family, the ipset restore text,
        for `steps` paced at `rate` and split evenly in time into `applies` batches."""
        endpoints: set[int] = set()
        parts: set[tuple[int, int]] = set()
        old = self.desired(endpoints, parts)
        tick = len(steps) / rate / applies
        out = []
        for n in range(applies):
            for s in steps[int(n * tick * rate) : int((n + 1) * tick * rate)]:
                item: set[int] | set[tuple[int, int]] = endpoints if s.endpoint else parts
                key = s.index if s.endpoint else (s.index, s.part)
                item.add(key) if s.present else item.discard(key)  # type: ignore[arg-type]
            new = self.desired(endpoints, parts)
            out.append(_diff(old, new))
            old = new
        return out

    def run(self, rate: float, seconds: float, applies: int) -> FloorRun:
        """The churn's steps for `seconds` at `rate` (whole rounds, as the churn) in
        `applies` batches."""
        steps: list[Step] = []
        while len(steps) < rate * seconds:
            steps += [s for wave in self.churn.plan() for s in wave]
        batches = self.plan(steps, rate, applies)
        tick = len(steps) / rate / applies
        assert self._routes.stdin is not None
        stat = f"/proc/{self._routes.pid}/stat"
        kids0, route0, own0 = _children_cpu(), proc_cpu(stat)[0], time.thread_time()
        t0 = time.monotonic()
        for n, (routes, restores, sets) in enumerate(batches):
            time.sleep(max(0.0, t0 + (n + 1) * tick - time.monotonic()))
            if routes:
                self._routes.stdin.write(routes)
                self._routes.stdin.flush()
            for family, text in restores.items():
                if text:
                    tool = FAMILIES[family][1]
                    self._exec([tool, "--noflush", "--wait"], text)
            if sets:
                self._exec(["ipset", "restore", "-exist"], sets)
        span = time.monotonic() - t0
        cpu = _children_cpu() - kids0 + proc_cpu(stat)[0] - route0 + time.thread_time() - own0
        return FloorRun(len(steps), span, applies, 100 * cpu / span)

    def _exec(self, args: list[str], stdin: str) -> None:
        # nsenter: only the network namespace (ip netns exec also remounts /sys per call)
        programs.run(["nsenter", f"--net=/run/netns/{self.netns}", *args], stdin=stdin, check=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _chains(save: str) -> dict[str, list[str]]:
    """cali- chains of one table's iptables-save: name -> its -A lines."""
    chains: dict[str, list[str]] = {}
    for line in save.splitlines():
        if line.startswith(":cali-"):
            chains[line[1:].split()[0]] = []
        elif line.startswith("-A cali-"):
            chains[line.split()[1]].append(line)
    return chains


def _diff(old: dict[str, object], new: dict[str, object]) -> tuple[str, dict[int, str], str]:
    routes = [f"route add {k[6:]}\n" for k in new.keys() - old.keys() if k.startswith("route ")]
    routes += [f"route del {k[6:]}\n" for k in old.keys() - new.keys() if k.startswith("route ")]
    sets = ""
    for k in new.keys() - old.keys():
        if k.startswith("ipset "):
            i = int(k.split()[1])
            sets += f"create cali40fl{i} hash:net family inet\n"
            sets += f"add cali40fl{i} 198.18.{200 + i % 50}.0/24\n"  # the network set's net
            sets += f"create cali60fl{i} hash:net family inet6\n"
    for k in old.keys() - new.keys():
        if k.startswith("ipset "):
            sets += f"destroy cali40fl{k.split()[1]}\ndestroy cali60fl{k.split()[1]}\n"
    restores = {}
    for family in FAMILIES:
        prefix = f"{family} "
        written = [k for k in new if k.startswith(prefix) and new[k] != old.get(k)]
        gone = [k for k in old if k.startswith(prefix) and k not in new]
        if not written and not gone:
            continue
        lines = ["*filter"]
        lines += [f":{k[len(prefix) :]} - [0:0]" for k in written]
        lines += [f"-F {k[len(prefix) :]}" for k in gone]
        lines += [ln for k in written for ln in new[k]]  # type: ignore[attr-defined]
        lines += [f"-X {k[len(prefix) :]}" for k in gone]
        restores[family] = "\n".join([*lines, "COMMIT"]) + "\n"
    return "".join(routes), restores, sets


def render(runs: Sequence[tuple[FelixRun, FloorRun]], seconds: float, notes: str) -> str:
    when, machine = run_stamp()
    head = [
        "| target/s | updates/s Felix (floor) | Felix CPU % of a core: own + programs "
        "(floor, ratio) | lag p50 / p99 / max | superseded, unresolved | applies/s "
        "| apply mean | restores per apply (8 tables) | ipset calls per apply | observer CPU % "
        "| load (1 min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = []
    for f, fl in runs:
        lags = f.lags or [float("nan")]
        p50, p99, top = (1000 * pct(lags, q) for q in (0.5, 0.99, 1.0))
        ratio = f.cpu / fl.cpu if fl.cpu else float("inf")
        rows.append(
            f"| {f.target:g} | {f.updates / f.seconds:.1f} ({fl.updates / fl.seconds:.1f}) "
            f"| {f.cpu_own:.1f} + {f.cpu_programs:.1f} = {f.cpu:.1f}"
            f"{'' if f.cpu <= CPU_GOAL else ' (over 25)'} ({fl.cpu:.1f}, {ratio:.1f}x) "
            f"| {p50:.0f} / {p99:.0f} / {top:.0f} ms"
            f"{'' if top <= 1000 * LAG_GOAL else ' (over 1 s)'} "
            f"| {f.superseded}, {f.unresolved} | {f.applies / f.seconds:.1f} "
            f"| {1000 * f.apply_seconds / max(1, f.applies):.0f} ms "
            f"| {f.restores / max(1, f.applies):.2f} | {f.ipset_calls / max(1, f.applies):.2f} "
            f"| {f.observer_cpu:.1f} | {f.load:.1f} |"
        )  # fmt: skip
    return "\n".join([
        f"## P4 churn rate: {seconds:g} s per rate on one Felix host (`bench/churn_rate.py`)", "",
        f"Measured {when} on {machine}. {notes}", "", *head, *rows, "", verdict(runs),
    ])  # fmt: skip


def verdict(runs: Sequence[tuple[FelixRun, FloorRun]]) -> str:
    met = [
        f.target for f, _ in runs
        if f.updates / f.seconds >= RATE_GOAL and f.cpu <= CPU_GOAL and f.lags
        and max(f.lags) <= LAG_GOAL and not f.unresolved and f.restores <= TABLES * f.applies
    ]  # fmt: skip
    goal = f">= {RATE_GOAL:g} updates/s, CPU <= {CPU_GOAL:g} % of a core, lag <= {LAG_GOAL:g} s"
    if met:
        return f"P4 target ({goal}) met at target rates {', '.join(f'{r:g}/s' for r in met)}."
    return f"P4 target ({goal}) NOT MET in this run."


def run(
    rates: Iterable[float], seconds: float, endpoints: int, policies: int
) -> list[tuple[FelixRun, FloorRun]]:
    out = []
    with EtcdServer() as etcd, Namespaces() as ns, tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(ns, etcd, Path(tmp))
        lag = floor = None
        try:
            host, base = baseline(cluster, **METRICS_ENV)
            lag = RouteLag(host.netns)
            churn = churner(cluster, host, endpoints, policies, precreate=True, conntrack=False,
                            on_endpoint_write=lag.expect)  # fmt: skip
            settle(host, base, timeout=30, quiet=3.0)  # Felix has seen the new veths
            floor = Floor(ns, host, churn)
            for rate in rates:
                print(f"{rate:g}/s for {seconds:g} s: Felix", flush=True)
                felix = measure_felix(cluster, host, churn, lag, rate, seconds)
                done = f"{felix.updates} updates, CPU {felix.cpu:.1f} %, {felix.applies} applies"
                print(f"  {done}; floor", flush=True)
                out.append((felix, floor.run(rate, seconds, max(1, felix.applies))))
            if host.proc is None or host.proc.poll() is not None:
                raise RuntimeError(f"Felix exited during the run:\n{host.log_tail()}")
        finally:
            for closing in (lag, floor):
                if closing is not None:
                    closing.close()
            cluster.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[50, 100, 150, 200], help="updates/s"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="per rate")
    parser.add_argument("--endpoints", type=int, default=200, help="churned endpoints a round")
    parser.add_argument("--policies", type=int, default=20, help="churned policy sets a round")
    parser.add_argument("--note", default="", help="added to the doc (e.g. the machine's load)")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args(argv)
    runs = run(opts.rate, opts.seconds, opts.endpoints, opts.policies)
    given = list(sys.argv[1:] if argv is None else argv)
    args = [  # the note is said once, after the command
        a for i, a in enumerate(given)
        if a != "--note" and not a.startswith("--note=") and given[i - 1 : i] != ["--note"]
    ]  # fmt: skip
    out = render(
        runs, opts.seconds, f"Command: `bench/churn_rate.py {shlex.join(args)}`. {opts.note}"
    )
    print(out)
    if not opts.no_write:
        write_section(DOC, SECTION, out, title="# Benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
