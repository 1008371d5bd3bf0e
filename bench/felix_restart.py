"""Benchmark P5: calico-felix killed (kill -9) and restarted at scale L with traffic running.

Run as root: ``.venv/bin/python bench/felix_restart.py [--endpoints 1000] [--remote 10000]
[--policies 1000] [--reps 7] [--write]`` (about 4 minutes on 2 cores), or ``--smoke`` for a
tiny run in seconds. ``--write`` records the table in docs/benchmarks.md.

It starts its own etcd, pre-populates it with felix_scale's workload (felix_harness, as
bench/felix_footprint.py), gives endpoints 0 and 1 (on pre-created veths whose peers sit in
two workload namespaces) their addresses, starts the real ``calico-felix`` in a throwaway host
namespace and waits until it is in sync and quiet. Then, --reps times: a ping every 10 ms
from workload 0 to workload 1 (an established flow through Felix's chains and routes), Felix
killed with SIGKILL, started again, in sync, quiet, the ping run to its end.

Rows (median and p99 over --reps; ratio = median / floor median):
- restart -> in sync: from the new process's start to its "in sync" log line. Floor: the
  read floor, measured in the same run: what any restarted agent must read before it can
  know nothing changed: every table of both families, every IP set, routes, links and
  neighbours (one `iptables-nft-save`, `ip6tables-nft-save`, `ipset save`, `ip -j ...` each,
  in the host namespace), plus a range read of the whole /calico/ prefix from etcd into
  Python (the client Felix uses).
- CPU until in sync: Felix's user + system CPU, its commands included (/proc/<pid>/stat),
  against the read floor's (its commands' and the etcd read's): less sensitive than the
  time to what else loads the machine.
- writes after restart (target 0, nothing changed): the commands Felix ran that write,
  seen by wrappers first on its PATH (iptables/ipset restores, `ip -force -batch`,
  conntrack deletions), and the sysctl writes it logs (it writes /proc/sys files); route
  and neighbour changes seen by `ip monitor` in the host namespace (netlink writes
  included); nftables commits (the ruleset generation before the kill and after the
  restart settled).
- packets lost: echo requests without a reply over the whole ping of each restart.
Namespaces, processes and etcd are removed afterwards; nothing touches the root namespace.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import resource as rlimit
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from calico import programs
from calico.dataplane.kernel import nft_generation
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench modules, next to this file
from felix_harness import KERNEL_READS, CpuTimes, FelixRun, populate, record
from felix_scale import Host, Scale, Workload, p99, progress, v4

TARGET_RATIO = 3.0
SYSCTL_WRITES = re.compile(r"wrote \d+ sysctls \([^)]*\)")  # calico.dataplane.drivers.links
PING_INTERVAL = 0.01
WATCHED = (  # what Felix runs, wrapped to count its writes
    "iptables-nft-restore", "ip6tables-nft-restore", "iptables-legacy-restore",
    "ip6tables-legacy-restore", "iptables-nft-save", "ip6tables-nft-save",
    "iptables-legacy-save", "ip6tables-legacy-save", "ipset", "ip", "sysctl", "conntrack",
)  # fmt: skip
ROW_FORMAT = "{:<34} {:>15} {:>9} {:>9} {:>9} {:>6} {:>8}"


# -- what Felix writes -----------------------------------------------------------------------


def wrappers(directory: Path, log: Path) -> None:
    """A script per WATCHED program that logs its command line, then execs the real one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in WATCHED:
        real = shutil.which(name)
        if real is None:
            continue
        script = directory / name
        script.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "{name} $*" >>{log}\nexec {real} "$@"\n')
        script.chmod(0o755)


def is_write(command: str) -> bool:
    name, *args = command.split()
    if name.endswith("-restore") or name == "conntrack":
        return True
    if name == "ipset":
        return "restore" in args or not {"save", "list"} & set(args)
    if name == "ip":
        return "-force" in args  # Felix's write batches; its reads are `ip -j ...`
    return name == "sysctl" and "-w" in args


def ours(monitor: str) -> list[str]:
    """The route and neighbour changes of `ip -o monitor label` that touch what Felix owns:
    routes on workload interfaces, and their permanent (static ARP) entries; the kernel's
    own neighbour state changes (a link-local entry going stale) are not writes."""
    out = []
    for line in monitor.splitlines():
        if " dev cali" not in line:
            continue
        if line.startswith("[ROUTE]") or (line.startswith("[NEIGH]") and "PERMANENT" in line):
            out.append(line)
    return out


@dataclass
class Restart:
    seconds: float
    cpu: float  # Felix's CPU (user + system, its commands included) until in sync
    commands: int
    writes: list[str]
    netlink_changes: list[str]
    nft_commits: int
    sent: int
    lost: int


@dataclass
class Results:
    cold: float
    restarts: list[Restart] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    floor_kernel: list[float] = field(default_factory=list)
    floor_cpu: list[float] = field(default_factory=list)


# -- the host --------------------------------------------------------------------------------


def give_addresses(ns: Namespaces, host: Host, peers: Sequence[str], count: int) -> None:
    """Endpoints 0..count-1 get their address on the workload side, and a default route via
    169.254.1.1 with a static neighbour entry (the host side's MAC): no proxy ARP needed in
    a host namespace that has no route of its own."""
    out = host.runner.run(["ip", "-j", "link"]).stdout
    links = {link["ifname"]: link for link in json.loads(out)}
    for i in range(count):
        wl, dev = peers[i % len(peers)], f"f{i}"
        lines = [
            f"address add {v4(i)}/32 dev {dev}",
            f"neigh replace 169.254.1.1 lladdr {links[f'cali{i}']['address']} dev {dev}"
            " nud permanent",
            f"route add 169.254.1.1 dev {dev} scope link",
            f"route add default via 169.254.1.1 dev {dev}",
        ]
        ns.exec(wl, ["ip", "-batch", "-"], stdin="\n".join(lines) + "\n")


def ping(ns: Namespaces, wl: str, dst: str, seconds: float, log: Path) -> programs.Popen[bytes]:
    count = math.ceil(seconds / PING_INTERVAL)
    return ns.popen(wl, ["ping", "-q", "-n", "-i", str(PING_INTERVAL), "-c", str(count), dst],
                    log=str(log))  # fmt: skip


def ping_counts(log: Path) -> tuple[int, int]:
    """(sent, received) from ping's summary line."""
    for line in log.read_text().splitlines():
        if "packets transmitted" in line:
            words = line.replace(",", "").split()
            return int(words[0]), int(words[3])
    raise RuntimeError(f"no ping summary in {log}: {log.read_text()[-500:]}")


def read_floor(host: Host, backend: EtcdBackend) -> tuple[float, float, float]:
    """(kernel + etcd, kernel) read time and the CPU of both: KERNEL_READS in the host
    namespace, one after the other, then the whole /calico/ prefix into Python."""
    script = "".join(f"{cmd} >/dev/null\n" for cmd in KERNEL_READS)
    children = rlimit.getrusage(rlimit.RUSAGE_CHILDREN)
    started, thread = time.perf_counter(), time.thread_time()
    programs.run(["ip", "netns", "exec", host.name, "sh", "-ec", script], check=True)
    kernel = time.perf_counter() - started
    backend.list("/calico/")
    after = rlimit.getrusage(rlimit.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return time.perf_counter() - started, kernel, cpu + time.thread_time() - thread


# -- driver ----------------------------------------------------------------------------------


def run(ns: Namespaces, scale: Scale, reps: int, quiet: float) -> Results:
    wl = Workload(scale)
    with EtcdServer() as etcd, tempfile.TemporaryDirectory(prefix="felix-restart-") as tmp:
        backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        felix: FelixRun | None = None
        try:
            ResourceClient(backend).ensure_initialized()
            progress(f"pre-creating {scale.endpoints} veths")
            peers = [ns.add(f"wl{n}") for n in range(2)]
            host = Host(ns, "felix", scale.endpoints, peers, "f")
            give_addresses(ns, host, peers, 2)
            started = time.perf_counter()
            count = populate(backend, wl.docs())
            progress(f"etcd: {count} resources in {time.perf_counter() - started:.1f} s")
            run_dir, tools, calls = Path(tmp, "run"), Path(tmp, "bin"), Path(tmp, "calls.log")
            wrappers(tools, calls)
            felix = FelixRun(ns, host, etcd, run_dir, tools)
            results = Results(felix.wait_in_sync(timeout=900))
            felix.settle(quiet)
            progress(f"cold start in sync after {results.cold:.1f} s; {reps} restarts")
            generation = nft_generation(host.name)
            if generation is None:
                raise RuntimeError("cannot read the nftables generation of the host namespace")
            dst = v4(1)
            warm = Path(tmp, "warm.ping")
            ping(ns, peers[0], dst, 0.5, warm).wait(timeout=30)
            sent, got = ping_counts(warm)
            if got != sent:
                raise RuntimeError(f"workload 0 cannot ping workload 1 ({got}/{sent} replies)")
            window = 2 * results.cold + 4
            for n in range(reps):
                before = generation()
                calls.write_text("")
                monitor = ns.popen(host.name, ["ip", "-o", "monitor", "label", "route", "neigh"],
                                   log=str(Path(tmp, f"monitor{n}.log")))  # fmt: skip
                log = Path(tmp, f"restart{n}.ping")
                pinger = ping(ns, peers[0], dst, window, log)
                time.sleep(0.5)
                felix.kill()
                felix = FelixRun(ns, host, etcd, run_dir, tools)
                seconds = felix.wait_in_sync(timeout=900)
                used = CpuTimes.read(felix.pid)
                felix.settle(quiet)
                if pinger.poll() is not None:
                    raise RuntimeError(f"the ping ended before Felix settled ({window:.0f} s)")
                pinger.wait(timeout=window + 30)
                monitor.kill()  # by its PID
                monitor.wait(timeout=10)
                commands = calls.read_text().splitlines()
                sysctls = [m.group(0) for m in SYSCTL_WRITES.finditer(felix.own_log())]
                changes = ours(Path(tmp, f"monitor{n}.log").read_text())
                sent, got = ping_counts(log)
                results.restarts.append(
                    Restart(
                        seconds,
                        used.own + used.children,
                        len(commands),
                        [c for c in commands if is_write(c)] + sysctls,
                        changes,
                        generation() - before,
                        sent,
                        sent - got,
                    )
                )
                both, kernel, cpu = read_floor(host, backend)
                results.floor.append(both)
                results.floor_kernel.append(kernel)
                results.floor_cpu.append(cpu)
                progress(f"restart {n + 1}/{reps}: in sync after {seconds:.2f} s")
        finally:
            if felix is not None:
                felix.stop()
            backend.close()
    return results


def report(scale: Scale, results: Results, reps: int) -> str:
    restarts = results.restarts
    times = [r.seconds for r in restarts]
    floor = statistics.median(results.floor)
    median = statistics.median(times)
    writes = [len(r.writes) for r in restarts]
    cpus = [r.cpu for r in restarts]
    cpu, floor_cpu = statistics.median(cpus), statistics.median(results.floor_cpu)
    changes = [len(r.netlink_changes) for r in restarts]
    commits = [r.nft_commits for r in restarts]
    sent, lost = sum(r.sent for r in restarts), sum(r.lost for r in restarts)
    label = scale.label()
    lines = [
        f"calico-felix restart (kill -9) vs the same-run read floor ({reps} restarts;"
        " scale = local/remote/policies)",
        ROW_FORMAT.format("metric", "scale", "median", "p99", "floor", "ratio", "target"),
        ROW_FORMAT.format("restart -> in sync (s)", label, f"{median:.2f}", f"{p99(times):.2f}",
                          f"{floor:.2f}", f"{median / floor:.2f}", f"<={TARGET_RATIO:g}"),
        ROW_FORMAT.format("CPU until in sync (s)", label, f"{cpu:.2f}", f"{p99(cpus):.2f}",
                          f"{floor_cpu:.2f}", f"{cpu / floor_cpu:.2f}", "-"),
        ROW_FORMAT.format("commands that write", label, f"{statistics.median(writes):g}",
                          str(max(writes)), "-", "-", "0"),
        ROW_FORMAT.format("route/neighbour changes (netlink)", label,
                          f"{statistics.median(changes):g}", str(max(changes)), "-", "-", "0"),
        ROW_FORMAT.format("nftables commits", label, f"{statistics.median(commits):g}",
                          str(max(commits)), "-", "-", "0"),
        ROW_FORMAT.format("packets lost (10 ms ping)", label, str(lost), "-", "-", "-", "0"),
    ]  # fmt: skip
    commands = statistics.median(r.commands for r in restarts)
    lines += [
        f"cold start (empty kernel) in sync after {results.cold:.2f} s; each restart ran"
        f" {commands:g} commands (median), pings sent over the restarts: {sent}",
        f"read floor: kernel {statistics.median(results.floor_kernel):.2f} s"
        f" ({', '.join(KERNEL_READS)}) + etcd range read of /calico/ into Python",
    ]
    seen = sorted({w for r in restarts for w in [*r.writes, *r.netlink_changes]})
    if seen:
        lines.append("writes seen: " + "; ".join(seen[:5]) + (" ..." if len(seen) > 5 else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, ns: Namespaces | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000, help="local endpoints (veths)")
    parser.add_argument("--remote", type=int, default=10000, help="remote endpoints")
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument(
        "--quiet", type=float, default=5.0, help="settled: under this %% of a core for 2 s"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny scale, 2 restarts")
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.endpoints, args.remote, args.policies, args.reps = 4, 20, 4, 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scale = Scale(args.endpoints, args.remote, args.policies)
    load_start = os.getloadavg()[0]
    if ns is not None:
        results = run(ns, scale, args.reps, args.quiet)
    else:
        with Namespaces() as own:
            results = run(own, scale, args.reps, args.quiet)
    table = report(scale, results, args.reps)
    print(table)
    if args.write and not args.smoke:
        heading = "P5 Felix restart (kill -9) at scale L, traffic running"
        used = argv if argv is not None else sys.argv[1:]
        record("felix-restart", heading, "felix_restart.py", used, table,
               (load_start, os.getloadavg()[0]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
