"""Benchmark P8: calico-felix's footprint after a cold start at scale L, and while idle.

Run as root: ``.venv/bin/python bench/felix_footprint.py [--endpoints 1000] [--remote 10000]
[--policies 1000] [--idle 90] [--write]`` (about 3 minutes on 2 cores), or ``--quick`` for
a small configuration in about 15 seconds. ``--write`` records the table in
docs/benchmarks.md.

It starts its own etcd and pre-populates it with felix_scale's workload (the same
resources: profiles, policies, dual-stack local endpoints on pre-created oper-up veths
``cali0..`` whose peers sit in two workload namespaces, remote endpoints on 50 other nodes),
then runs the real ``calico-felix`` executable in a throwaway host namespace, exactly as an
operator does (NODENAME, ETCD_ENDPOINTS, CALICO_RUN_DIR, every other setting at its
default), twice:

1. with half the remote endpoints in etcd: RSS once in sync and settled;
2. (kernel state emptied, Felix restarted) with all of them: RSS once in sync and settled,
   then an idle window of --idle seconds: CPU from /proc/<pid>/stat, RSS and its peak
   (VmHWM) from /proc/<pid>/status at its end.

Felix's periodic work at its defaults: iptables, IP set and route refresh (re-read and
repair) every 90 s (IptablesRefreshInterval, IpsetsRefreshInterval, RouteRefreshInterval),
the status heartbeat every 30 s (ReportingIntervalSecs), the supervisor's 1 s liveness tick
and the dataplane loop's wake-up at most every 10 s. The default idle window of 90 s holds
exactly one of each refresh and three heartbeats, so its mean is the long-run idle cost.

Rows, each with its P8 target and a ratio to a floor measured in the same run:
- RSS (after idle) and peak RSS: floor = a bare ``python -c 'import calico.felix.daemon'``
  in the same venv (the import floor: interpreter + every module Felix loads);
- RSS per remote endpoint: the RSS slope between the two runs; floor = the mean size of a
  remote endpoint's value as stored in etcd (its JSON);
- idle CPU, Felix alone (utime + stime) and with its commands (+ cutime + cstime): floor =
  the kernel reads of a refresh cycle that re-reads everything (iptables-save,
  ip6tables-save, ipset save, ip route/link/neigh dumps, a sysctl read of the settings Felix
  owns, all in the same namespace), their CPU per 90 s. Felix can go below it: with the nft
  backend it skips the iptables re-read while the ruleset generation has not moved.
Namespaces and etcd are removed afterwards (Felix is killed by PID); nothing touches the
root namespace.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource as rlimit
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.datastore.client import ResourceClient, encode
from calico.datastore.etcd import EtcdBackend
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench modules, next to this file
from felix_harness import KERNEL_READS, FelixRun, populate, proc_status, record
from felix_scale import Host, Scale, Workload, iface, progress, resource, sysctl_names

REFRESH = 90.0  # Felix's default iptables / IP set / route refresh interval (s)
MIB = 1024 * 1024
ROW_FORMAT = "{:<40} {:>13} {:>11} {:>9} {:>11} {:>7}"


@dataclass
class Measurement:
    remote: int
    cold: float  # Popen -> "in sync" in its log
    settled_rss: int
    settle: float  # in sync -> quiet
    idle: float = 0.0
    cpu_own: float = 0.0
    cpu_all: float = 0.0
    peak_second: float = 0.0  # highest own + children over any ~1 s sample
    rss: int = 0
    hwm: int = 0


def measure(
    ns: Namespaces,
    host: Host,
    etcd: EtcdServer,
    run_dir: Path,
    remote: int,
    idle: float,
    quiet: float,
) -> tuple[Measurement, float]:
    """One Felix run on an emptied host; returns its numbers and the CPU floor (% of a core)
    measured in the namespace Felix programmed (only when idle > 0, else 0)."""
    host.reset()
    felix = FelixRun(ns, host, etcd, run_dir)
    try:
        cold = felix.wait_in_sync(timeout=900)
        progress(f"in sync after {cold:.1f} s; settling")
        settle = felix.settle(quiet)
        m = Measurement(remote, cold, proc_status(felix.pid)["VmRSS"], settle)
        floor = 0.0
        if idle > 0:
            progress(f"idle for {idle:.0f} s")
            m.idle = idle
            m.cpu_own, m.cpu_all, m.peak_second = felix.idle(idle)
            status = proc_status(felix.pid)
            m.rss, m.hwm = status["VmRSS"], status["VmHWM"]
            floor = refresh_floor(host.name, host.count)
        return m, floor
    finally:
        felix.stop()


def refresh_floor(netns: str, endpoints: int, reps: int = 5) -> float:
    """CPU % of one core that one refresh cycle's raw kernel reads cost every REFRESH s:
    the dumps, and one `sysctl` reading back the global and per-interface settings."""
    script = "".join(f"{cmd} >/dev/null\n" for cmd in KERNEL_READS)
    sysctls = sysctl_names(map(iface, range(endpoints)))
    samples = []
    for _ in range(reps):
        before = rlimit.getrusage(rlimit.RUSAGE_CHILDREN)
        for args in (["sh", "-ec", script], ["sysctl", *sysctls]):
            cmd = ["ip", "netns", "exec", netns, *args]
            programs.run(cmd, check=True)
        after = rlimit.getrusage(rlimit.RUSAGE_CHILDREN)
        samples.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return 100 * statistics.median(samples) / REFRESH


def import_floor() -> tuple[int, int]:
    """VmRSS and VmHWM of `python -c 'import calico.felix.daemon'` (the same venv), alive."""
    code = "import sys, calico.felix.daemon; print('ready', flush=True); sys.stdin.read()"
    proc = programs.start([sys.executable, "-c", code], stdin=programs.PIPE, stdout=programs.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the import floor process did not start")
        status = proc_status(proc.pid)
        return status["VmRSS"], status["VmHWM"]
    finally:
        proc.kill()  # by its PID
        proc.wait(timeout=10)


# -- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: str
    scale: str
    value: str
    target: str
    floor: str
    ratio: str


def ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}" if floor > 0 else "-"


def report(
    scale: Scale,
    half: Measurement,
    full: Measurement,
    imports: tuple[int, int],
    value_bytes: float,
    cpu_floor: float,
) -> str:
    label = scale.label()
    slope = (full.settled_rss - half.settled_rss) / max(1, full.remote - half.remote)
    rows = [
        Row("RSS after in sync + idle (MiB)", label, f"{full.rss / MIB:.1f}", "<=250",
            f"{imports[0] / MIB:.1f}", ratio(full.rss, imports[0])),
        Row("peak RSS, VmHWM (MiB)", label, f"{full.hwm / MIB:.1f}", "-",
            f"{imports[1] / MIB:.1f}", ratio(full.hwm, imports[1])),
        Row("RSS per remote endpoint (KiB)", f"{half.remote}->{full.remote}",
            f"{slope / 1024:.2f}", "<=10", f"{value_bytes / 1024:.2f}",
            ratio(slope, value_bytes)),
        Row(f"idle CPU, Felix alone (% core, {full.idle:.0f} s)", label, f"{full.cpu_own:.2f}",
            "<=2", f"{cpu_floor:.3f}", ratio(full.cpu_own, cpu_floor)),
        Row("idle CPU, with its commands (% core)", label, f"{full.cpu_all:.2f}", "<=2",
            f"{cpu_floor:.3f}", ratio(full.cpu_all, cpu_floor)),
    ]  # fmt: skip
    lines = [
        "calico-felix footprint (P8) vs same-run floors (scale = local/remote/policies)",
        ROW_FORMAT.format("metric", "scale", "value", "target", "floor", "ratio"),
        *(ROW_FORMAT.format(*vars(r).values()) for r in rows),
        f"runs: remote {half.remote}: in sync {half.cold:.1f} s, settled {half.settle:.1f} s,"
        f" RSS {half.settled_rss / MIB:.1f} MiB; remote {full.remote}: in sync {full.cold:.1f} s,"
        f" settled {full.settle:.1f} s, RSS {full.settled_rss / MIB:.1f} MiB",
        f"idle window: {full.idle:.0f} s = {full.idle / REFRESH:.2f} refresh periods (90 s:"
        " iptables, IP sets, routes) and 30 s heartbeats; busiest ~1 s sample"
        f" {full.peak_second:.1f} % of a core",
        "floors: RSS = python -c 'import calico.felix.daemon' (same venv, alive);"
        " per endpoint = mean etcd value of a remote endpoint;",
        f"  CPU = {', '.join(KERNEL_READS)}, sysctl <every setting Felix owns> in Felix's"
        f" namespace, once per {REFRESH:.0f} s",
    ]
    return "\n".join(lines)


# -- driver ----------------------------------------------------------------------------------


def run(ns: Namespaces, scale: Scale, idle: float, quiet: float) -> str:
    wl = Workload(scale)
    half = scale.remote // 2
    imports = import_floor()
    with EtcdServer() as etcd, tempfile.TemporaryDirectory(prefix="felix-footprint-") as tmp:
        backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        try:
            ResourceClient(backend).ensure_initialized()
            progress(f"pre-creating {scale.endpoints} veths")
            peers = [ns.add(f"wl{n}") for n in range(2)]
            host = Host(ns, "felix", scale.endpoints, peers, "f")
            started = time.perf_counter()
            count = populate(backend, [*wl.docs(range(0)), *wl.remote_docs(range(half))])
            progress(f"etcd: {count} resources in {time.perf_counter() - started:.1f} s;"
                     f" Felix with {half} remote endpoints")  # fmt: skip
            first, _ = measure(ns, host, etcd, Path(tmp, "half"), half, 0, quiet)
            rest = wl.remote_docs(range(half, scale.remote))
            populate(backend, rest)
            value_bytes = statistics.mean(len(encode(resource(doc))) for doc in rest)
            progress(f"etcd: +{len(rest)}; Felix with {scale.remote} remote endpoints")
            second, floor = measure(ns, host, etcd, Path(tmp, "full"), scale.remote, idle, quiet)
        finally:
            backend.close()
    return report(scale, first, second, imports, value_bytes, floor)


def main(argv: Sequence[str] | None = None, ns: Namespaces | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000, help="local endpoints (veths)")
    parser.add_argument("--remote", type=int, default=10000, help="remote endpoints (full run)")
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=REFRESH, help="idle window (s)")
    parser.add_argument(
        "--quiet", type=float, default=5.0, help="settled: under this %% of a core for 2 s"
    )
    parser.add_argument("--quick", action="store_true", help="small scale, idle 5 s")
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.endpoints, args.remote, args.policies, args.idle = 10, 400, 10, 5.0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scale = Scale(args.endpoints, args.remote, args.policies)
    load_start = os.getloadavg()[0]
    if ns is not None:
        table = run(ns, scale, args.idle, args.quiet)
    else:
        with Namespaces() as own:
            table = run(own, scale, args.idle, args.quiet)
    print(table)
    if args.write and not args.quick:
        used = argv if argv is not None else sys.argv[1:]
        record("felix-footprint", "P8 Felix footprint and idle CPU at scale L",
               "felix_footprint.py", used, table, (load_start, os.getloadavg()[0]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
