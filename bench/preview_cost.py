"""Benchmark: what `calicoctl apply --preview` costs as the endpoints grow.

Run with ``.venv/bin/python bench/preview_cost.py [--endpoints 20 40 80 160] [--hosts 4]
[--reps 3] [--no-write]``. It starts its own etcd (calico.testing.etcd_server; nothing touches the
kernel) and, per size, writes that many IPv4 workload endpoints in one namespace, spread
over --hosts nodes and over ten `app` label values, with a namespace profile and an
allow-all GlobalNetworkPolicy. The previewed change is one NetworkPolicy selecting one app
that allows TCP 8080 from another app and denies TCP 5432, so every pair of endpoints is
traced on two probes, before and after.

Rows (median and p99 over --reps): the preview in-process (`calico.ctl.preview.preview`, the
code `apply --preview` runs, from the datastore read to the sorted changes), and its floor,
measured in the same run: reading the same datastore snapshot (`Snapshot.load`, which the
preview cannot skip). Also the (pair, probe) traces it compared and the changes it found, so
a cut in the work shows as fewer traces with the same changes. The table is written into
docs/benchmarks.md between the `preview-cost` markers unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from calico.ctl.preview import preview
from calico.ctl.trace_source import Snapshot
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.model import parse_manifest
from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.etcd_server import EtcdServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

APPS = 10

BASE = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec: {labelsToApply: {pcns.projectcalico.org/name: shop}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-all}
spec: {order: 1000, selector: all(), ingress: [{action: Allow}], egress: [{action: Allow}]}
"""

CHANGE = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: app1-ingress, namespace: shop}
spec:
  order: 10
  selector: app == 'app1'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'app2'}, destination: {ports: [8080]}}
  - {action: Deny, protocol: TCP, destination: {ports: [5432]}}
"""


def endpoint(index: int, hosts: int) -> str:
    third, fourth = divmod(index + 1, 250)
    return f"""
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{namespace: shop, labels: {{app: app{index % APPS}}}}}
spec: {{node: host-{index % hosts}, orchestrator: k8s, pod: pod-{index}, endpoint: eth0,
       interfaceName: cali{index:011d}, ipNetworks: [198.19.{third}.{fourth}/32],
       profiles: [kns.shop]}}
"""


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def measure(endpoints: int, hosts: int, reps: int) -> dict[str, object]:
    with EtcdServer() as etcd:
        backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        try:
            return _measure(ResourceClient(backend), endpoints, hosts, reps)
        finally:
            backend.close()


def _measure(client: ResourceClient, endpoints: int, hosts: int, reps: int) -> dict[str, object]:
    client.ensure_initialized()
    manifest = "---".join([BASE, *(endpoint(i, hosts) for i in range(endpoints))])
    for resource in parse_manifest(manifest):
        client.apply(resource)
    change = parse_manifest(CHANGE)
    found: list[tuple[int, int]] = []

    def run_preview() -> None:
        outcome = preview(client, change, delete=False)
        found.append((len(outcome.changes), outcome.traced))

    floor = timed(lambda: Snapshot.load(client), reps)
    took = timed(run_preview, reps)
    changes, compared = found[-1]
    return {
        "endpoints": endpoints,
        "took": took,
        "floor": floor,
        "traces": compared,
        "changes": changes,
    }


def table(rows: Sequence[dict[str, object]]) -> str:
    lines = [
        f"{'endpoints':>9} {'traces':>8} {'changes':>7} {'median s':>9} {'p99 s':>8} "
        f"{'floor s':>8} {'ratio':>7} {'us/trace':>9}"
    ]
    for row in rows:
        took, floor = row["took"], row["floor"]
        assert isinstance(took, list) and isinstance(floor, list)
        median, floor_median = statistics.median(took), statistics.median(floor)
        traces = row["traces"]
        assert isinstance(traces, int)
        per = (median - floor_median) / traces * 1e6 if traces else 0.0
        lines.append(
            f"{row['endpoints']:>9} {traces:>8} {row['changes']:>7} {median:>9.3f} "
            f"{p99(took):>8.3f} {floor_median:>8.3f} {median / floor_median:>7.1f} {per:>9.1f}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[20, 40, 80, 160])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args(argv)
    rows = [measure(n, args.hosts, args.reps) for n in args.endpoints]
    out = table(rows)
    print(out, end="")
    if not args.no_write:
        when, machine = run_stamp()
        command = " ".join(["bench/preview_cost.py", *(sys.argv[1:] if argv is None else argv)])
        write_section(
            DOC,
            "preview-cost",
            f"## apply --preview as endpoints grow (`bench/preview_cost.py`)\n\n"
            f"{when}; {machine}; load average {os.getloadavg()[0]:.1f}; `{command}`, "
            f"{args.hosts} hosts, 10 label values.\n\n```\n{out}```\n",
            title="# Benchmark figures",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
