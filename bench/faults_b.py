"""Bad data and hostile workloads, each with its figure against its goal.

Run with ``.venv/bin/python bench/faults_b.py [--adds 24] [--seeds 3]`` as root. Rows:

- garbage under every resource prefix (bad JSON, wrong kind, bad field, 1.4 MB) read by
  Felix's syncer and calculation graph, the BGP agent, IPAM and `calicoctl get` of every
  kind (calico.testing.garbage_survey): readers alive, log lines per bad key, fail closed;
- CNI ADDs SIGKILLed mid-way in parallel, then DEL (bench/cni_killed.py): leaks;
- the FV tests that prove the rest with real packets, run here and reported with what they
  assert: a broken Ingress-only policy in etcd keeps egress, Felix over garbage, spoofing
  with hand-made packets, DefaultEndpointToHostAction.

The table is printed and written into docs/reliability.md between the `faults-b` markers
(with date and machine) unless --no-write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.datastore.etcd import EtcdBackend
from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.etcd_server import EtcdServer
from calico.testing.garbage import FLAVOURS, HUGE_BYTES
from calico.testing.garbage_survey import survey
from calico.testing.netns import Namespaces

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cni_killed import Leaks, format_leaks  # bench/ is no package: its sibling
from cni_killed import run as run_cni_killed

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
SECTION = "faults-b"
# FV tests whose assertions are the figure (a count of 0, or traffic that must still flow).
FV_ROWS = (
    (
        "tests/fv/test_broken_policy_directions.py::test_broken_ingress_policy_denies_ingress_and_keeps_egress",
        "Ingress-only policy with an invalid rule, written into etcd",
        "ingress denied, egress kept (v4 and v6 pings); types unreadable: both denied",
    ),
    (
        "tests/fv/test_broken_policy_directions.py::test_felix_keeps_running_over_garbage_under_every_prefix",
        "Felix process over garbage under every prefix (and a broken FelixConfiguration)",
        "alive, 1 line per bad key over 5 s of refreshes, broken policies fail closed",
    ),
    (
        "tests/fv/test_crafted_spoofing.py",
        "Hand-made UDP (raw sockets) with another workload's source, v4 and v6",
        "per family 0 of 90 delivered (60 with the victim's source, 30 not yet allowed); "
        "a source in allowSpoofedSourcePrefixes delivered",
    ),
    (
        "tests/fv/test_crafted_spoofing.py::test_claiming_another_workloads_address_by_arp_or_ndp_has_no_effect",
        "ARP replies/gratuitous ARP (100) and NDP overriding NAs (50) for another's address",
        "victim reachable from host and workloads; host's neighbour entry unchanged",
    ),
    (
        "tests/fv/test_anti_spoofing.py tests/fv/test_endpoint_to_host.py",
        "Foreign source address on a workload; workload to its host",
        "0 of 18 spoofed delivered per family; to-host per DefaultEndpointToHostAction "
        "(Drop, Accept; v4 and v6)",
    ),
)


@dataclass(frozen=True, slots=True)
class Row:
    test: str
    figure: str
    goal: str
    met: bool


def garbage_rows() -> list[Row]:
    with EtcdServer() as etcd:
        backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        try:
            result = survey(backend, etcd.endpoint)
        finally:
            backend.close()
    test = (
        f"Garbage under every prefix: {len(result.items)} keys ({', '.join(FLAVOURS)}; "
        f"huge = {HUGE_BYTES / 2**20:.2f} MiB)"
    )
    alive = sum(r.alive for r in result.readings)
    rows = [
        Row(
            test,
            f"{alive} of {len(result.readings)} readers alive",
            "all alive",
            alive == len(result.readings),
        ),
        Row(test, f"broken policies fail closed: {result.fail_closed}", "True", result.fail_closed),
    ]
    for r in result.readings:
        figure = (
            f"{r.component}: {r.max_lines_per_key} line(s) per key at most, "
            f"{r.keys_reported} keys named, longest line {r.longest_line} chars"
        )
        rows.append(Row(test, figure, "1 line per key, < 1000 chars", r.max_lines_per_key == 1))
    return rows


def cni_rows(adds: int, seeds: int) -> list[Row]:
    rows = []
    for seed in range(1, seeds + 1):
        with Namespaces() as ns:  # one host per round
            leaks: Leaks = run_cni_killed(ns, adds, seed)
        figure = format_leaks(leaks)
        rows.append(Row(f"CNI ADDs SIGKILLed (seed {seed})", figure, "0 leaks", leaks.total == 0))
    return rows


def fv_rows() -> list[Row]:
    rows = []
    for tests, what, asserted in FV_ROWS:
        proc = programs.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests.split()],
            cwd=str(ROOT),
            timeout=900,
        )
        passed = proc.returncode == 0
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        rows.append(Row(what, f"{asserted} ({summary})", "test passes", passed))
    return rows


def table(rows: Sequence[Row]) -> str:
    lines = ["| test | figure | goal | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.test} | {r.figure} | {r.goal} | {'yes' if r.met else 'NO'} |" for r in rows]
    return "\n".join(lines)


def render(rows: Sequence[Row]) -> str:
    when, machine = run_stamp()
    return "\n".join([
        "## Bad data and hostile workloads (bench/faults_b.py)", "",
        f"Run {when} on {machine}.", "",
        table(rows),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=24, help="parallel ADDs per round")
    parser.add_argument("--seeds", type=int, default=3, help="rounds of killed ADDs")
    parser.add_argument("--no-fv", action="store_true", help="skip the FV test rows")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args(argv)
    rows = garbage_rows() + cni_rows(opts.adds, opts.seeds)
    rows += [] if opts.no_fv else fv_rows()
    text = render(rows)
    print(text)
    if not opts.no_write:
        write_section(DOC, SECTION, text)
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
