"""Endpoint and policy churn on one real Felix host: RSS before/after and leftovers.

Run as root: ``.venv/bin/python bench/churn.py [--minutes 10] [--rate 100]``. One Felix host
in its own namespaces with a real etcd (tests/fv: the FV host, default Felix settings), a
baseline of 4 dual-stack workloads and a policy that stay; then churn at --rate changes/s
(calico.testing.churn: workload endpoints with their veths and a conntrack entry each,
GlobalNetworkPolicies, Profiles, GlobalNetworkSets, each round created then deleted) for
--minutes, split into two equal halves: a warm-up and a measured one. After each half
Felix is given up to --settle seconds to clean up, then its VmRSS is read and the kernel is
compared with the baseline: routes on cali* devices, cali- chains (iptables-save and
ip6tables-save, every table), IP sets (ipset list -n), conntrack entries from churned
addresses.

RSS goal: Python keeps the arenas and caches it grew into during the first churn, so the
warm-up half shows the one-off growth; the goal is on the measured half: it grows by at most
5 % of the RSS after the warm-up (flat; a leak of a few hundred bytes per change would
exceed it at this rate). Leftovers: 0. The table is printed and written into
docs/reliability.md between the `churn` markers unless --no-write.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the FV host (tests/fv), reused as it is
from tests.fv.churn_host import Settled, baseline, churner, settle  # noqa: E402
from tests.fv.conftest import Cluster  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
SECTION = "churn"
MIB = 1024 * 1024
RSS_GOAL = 0.05  # measured half: growth at most this share of the RSS after warm-up
APPLY_FAILED = "dataplane apply failed"


@dataclass(frozen=True, slots=True)
class Row:
    test: str
    figure: str
    goal: str
    met: bool


@dataclass(frozen=True, slots=True)
class Half:
    name: str
    changes: int
    seconds: float
    settled: Settled


def run(minutes: float, rate: float, settle_cap: float, endpoints: int) -> tuple[list[Row], str]:
    with EtcdServer() as etcd, Namespaces() as ns, tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(ns, etcd, Path(tmp))
        try:
            host, base = baseline(cluster)
            start = settle(host, base, timeout=30, quiet=5.0)
            churn = churner(cluster, host, endpoints, max(1, endpoints // 2))
            halves = []
            for name in ("warm-up", "measured"):
                print(f"{name}: {minutes / 2:.1f} min at {rate:.0f} changes/s", flush=True)
                done = churn.churn(minutes * 30, rate)
                after = settle(host, base, timeout=settle_cap, quiet=10.0)
                halves.append(Half(name, done.changes, done.seconds, after))
                print(f"  {done.changes} changes, RSS {after.rss / MIB:.1f} MiB,"
                      f" leftovers {after.leftovers}", flush=True)  # fmt: skip
            alive = host.proc is not None and host.proc.poll() is None
            retries = host.log_since_start().count(APPLY_FAILED)
            stale = len(churn.stale_conntrack)
        finally:
            cluster.close()
    return rows(start, halves, rate, alive), notes(start, halves, endpoints, retries, stale)


def rows(start: Settled, halves: list[Half], rate: float, alive: bool) -> list[Row]:
    warm, measured = halves
    out = []
    for h in halves:
        achieved = h.changes / h.seconds
        out.append(Row(f"Churn, {h.name} half ({h.seconds / 60:.1f} min)",
                       f"{h.changes} changes, {achieved:.1f}/s", f">= {0.95 * rate:.0f}/s",
                       achieved >= 0.95 * rate))  # fmt: skip
        left = ", ".join(f"{k} {v}" for k, v in h.settled.leftovers.items())
        out.append(Row(f"Leftovers after the {h.name} half", left, "0 each",
                       not any(h.settled.leftovers.values())))  # fmt: skip
    grow_warm = warm.settled.rss - start.rss
    grow = measured.settled.rss - warm.settled.rss
    out.append(Row("Felix RSS, warm-up half (one-off growth, for reference)",
                   f"{start.rss / MIB:.1f} -> {warm.settled.rss / MIB:.1f} MiB "
                   f"({grow_warm / MIB:+.1f})", "-", True))  # fmt: skip
    out.append(Row("Felix RSS, measured half",
                   f"{warm.settled.rss / MIB:.1f} -> {measured.settled.rss / MIB:.1f} MiB "
                   f"({100 * grow / warm.settled.rss:+.1f} %)",
                   f"<= +{100 * RSS_GOAL:.0f} %", grow <= RSS_GOAL * warm.settled.rss))  # fmt: skip
    out.append(Row("Felix alive at the end", str(alive), "True", alive))
    return out


def notes(start: Settled, halves: list[Half], endpoints: int, retries: int, stale: int) -> str:
    cleanup = ", ".join(f"{h.name} {h.settled.seconds:.0f} s" for h in halves)
    return (
        f"Churned per round: {endpoints} endpoints, {max(1, endpoints // 2)} each of policies,"
        f" profiles, network sets (created, then deleted); baseline kernel state: "
        f"{len(start.state.routes)} cali routes, {len(start.state.chains)} cali- chains, "
        f"{len(start.state.ipsets)} IP sets. Time to settle after each half (no leftovers, "
        f"state unchanged 10 s): {cleanup}. Felix retried {retries} dataplane applies that "
        "failed because a churned veth vanished mid-apply (one warning line each); each "
        "retry converged (leftovers above). When a re-created endpoint was written, the "
        f"previous holder's conntrack entry of its address was still there {stale} times: "
        "Felix had not handled the change yet. It deletes a released address's flows before "
        "routing the address to another interface (a re-created veth of the same name is "
        "another interface), so none is inherited: tests/fv/test_conntrack_reuse.py."
    )


def render(rows: Sequence[Row], notes: str, minutes: float) -> str:
    when, machine = run_stamp()
    lines = ["| test | figure | goal | date | machine |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.test} | {r.figure}{'' if r.met else ' (NOT MET)'} | {r.goal} | {when} "
              f"| {machine} |" for r in rows]  # fmt: skip
    return "\n".join([
        f"## Endpoint and policy churn, {minutes:g} minutes (bench/churn.py)", "",
        *lines, "", notes,
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total churn (2 halves)")
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--endpoints", type=int, default=40, help="churned endpoints a round")
    parser.add_argument("--settle", type=float, default=120.0, help="clean-up cap (s)")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args(argv)
    table, text = run(opts.minutes, opts.rate, opts.settle, opts.endpoints)
    out = render(table, text, opts.minutes)
    print(out)
    if not opts.no_write:
        write_section(DOC, SECTION, out)
    return 0 if all(r.met for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
