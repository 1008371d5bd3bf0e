"""Benchmark: wall time of the installed CNI plugin per ADD and DEL, against the interpreter's
own start-up measured in the same run.

Run with ``.venv/bin/python bench/cni_exec.py [--runs 20]`` as root. It starts its own etcd
(with an IPv4 pool in 198.19.0.0/24), a host namespace, and for every run a container
namespace; installs the plugins with `calico cni install` into a temp dir and executes the
`calico` plugin exactly as a runtime (and the lab, and so P9) does: `nsenter` into the host
namespace, a Kubernetes-style CNI_* environment, the config on stdin. Each run is one ADD and
the DEL of the same container; a first, untimed run claims the IPAM block and warms caches.
Rows (median and p99 over --runs):

- ADD, DEL: the plugin end to end in a host namespace where no calico node runs, so the
  plugin process does everything (start-up, imports, etcd, kernel);
- ADD node, DEL node: the same in a second host namespace where `calico cni serve` (what
  `calico node run` runs) listens, so the plugin process hands the call over
  (`calico.cni.node_socket`); their `cpu ms` adds the service's CPU for the call;
- VERSION: the plugin's start-up alone (interpreter, imports of the entry module, no I/O).

`--baseline PYTHON` also installs the plugins of another installation (e.g. main's venv
interpreter) and runs its ADD, DEL and VERSION right after this one's in every run, so a
before/after comparison shares the machine's load (rows `<command> base`): on a loaded
machine two benches run one after the other differ by more than most changes do.

`cpu ms` is the user + system CPU time of the command's process (median): on a loaded machine
the wall time is mostly waiting for a core, the CPU time much less so.

The `etcd` column is the etcd requests one command made (median; etcd's own
`grpc_server_handled_total` counters read before and after it), so round trips cut from the
hot path stay cut.

Floor: the same interpreter with the plugin's flags (`python -I -c pass`), exec'd the same
way, so ratio = median / floor median is what the plugin adds on top of starting Python.
Namespaces and etcd are removed afterwards; nothing touches the root namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico import programs
from calico.cni.install import install_plugins
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.model import parse_resource
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces

NODE = "bench-node"
CALICO = str(Path(sys.executable).parent / "calico")
POOL = "198.19.0.0/24"
ROW_FORMAT = "{:<12} {:>10} {:>9} {:>9} {:>6} {:>7} {:>5}"
HANDLED = re.compile(r"^grpc_server_handled_total\{[^}]*\} (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Row:
    command: str
    times: list[float]
    floor: list[float]
    requests: list[int]
    cpu: list[float]


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    requests: int = 0


class Bench:
    """Two host namespaces (one with the CNI service), an etcd with a pool and the installed
    plugins; a context manager, whose exit stops the service."""

    def __init__(self, ns: Namespaces, etcd: EtcdServer, bin_dir: Path) -> None:
        self.ns = ns
        self.host = ns.add("host")
        self.node_host = ns.add("node")
        self.service = programs.start(
            ["nsenter", f"--net=/run/netns/{self.node_host}", CALICO, "cni", "serve"],
            stderr=programs.DEVNULL,
        )
        self.etcd_endpoint = etcd.unix_endpoint
        self.metrics_url = f"{etcd.endpoint}/metrics"
        self.bin_dir = bin_dir
        install_plugins(bin_dir)
        backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        try:
            client = ResourceClient(backend)
            client.ensure_initialized()
            client.apply(parse_resource({
                "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": "bench-pool"}, "spec": {"cidr": POOL, "blockSize": 26},
            }))  # fmt: skip
        finally:
            backend.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *_: object) -> None:
        self.service.terminate()
        self.service.wait(timeout=60)

    def service_cpu(self) -> float:
        """CPU seconds the service has used (all its threads)."""
        fields = Path(f"/proc/{self.service.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def conf(self, log_file: Path) -> dict[str, Any]:
        """The lab's config (`calico.lab.cni.net_conf`): IPv4, k8s policy, info log."""
        return {
            "cniVersion": "1.0.0",
            "name": "bench-net",
            "type": "calico",
            "etcd_endpoints": self.etcd_endpoint,
            "nodename": NODE,
            "log_level": "info",
            "log_file_path": str(log_file),
            "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "false"},
            "policy": {"type": "k8s"},
        }

    def exec(self, argv: Sequence[str], env: dict[str, str], stdin: str = "") -> float:
        """Run `argv` in the host namespace as a runtime would; returns its wall time."""
        return self.sample(argv, env, stdin).wall

    def sample(
        self, argv: Sequence[str], env: dict[str, str], stdin: str = "", host: str | None = None
    ) -> Sample:
        """Wall and CPU time of `argv` (nsenter execs it: the child reaped is the command)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = programs.run(
            ["nsenter", f"--net=/run/netns/{host or self.host}", *argv],
            stdin=stdin,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env},
            timeout=120,
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            detail = proc.stdout + proc.stderr
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {detail}")
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return Sample(elapsed, cpu)

    def plugin(
        self,
        command: str,
        netns: str,
        container_id: str,
        conf: dict[str, Any],
        bin_dir: Path | None = None,
        host: str | None = None,
    ) -> Sample:
        bin_dir = bin_dir or self.bin_dir
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={netns}",
            "CNI_PATH": str(bin_dir),
        }
        return self.sample([str(bin_dir / "calico")], env, json.dumps(conf), host)

    def add_del(
        self, k: int, conf: dict[str, Any], bin_dir: Path | None = None, via_node: bool = False
    ) -> tuple[Sample, Sample]:
        """The ADD's and the DEL's times, CPU (with the service's) and etcd requests."""
        netns = self.ns.add(f"c{k}{'b' if bin_dir else ''}{'n' if via_node else ''}")
        host = self.node_host if via_node else self.host
        container_id = secrets.token_hex(32)
        samples = []
        for command in ("ADD", "DEL"):
            requests, service = self.etcd_requests(), self.service_cpu()
            each = self.plugin(command, netns, container_id, conf, bin_dir, host)
            service = self.service_cpu() - service if via_node else 0.0
            samples.append(Sample(each.wall, each.cpu + service, self.etcd_requests() - requests))
        return samples[0], samples[1]

    def etcd_requests(self) -> int:
        """Requests etcd has answered so far (this read itself is HTTP, not counted)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        return sum(int(n) for n in HANDLED.findall(text))

    def version(self, bin_dir: Path | None = None) -> Sample:
        return self.sample([str((bin_dir or self.bin_dir) / "calico")], {"CNI_COMMAND": "VERSION"})

    def python(self) -> float:
        return self.exec([sys.executable, "-I", "-c", "pass"], {})


def run(ns: Namespaces, runs: int, baseline: str | None = None) -> list[Row]:
    with (
        EtcdServer() as etcd,
        tempfile.TemporaryDirectory(prefix="calico-bench-cni-") as tmp,
        Bench(ns, etcd, Path(tmp) / "bin") as bench,
    ):
        return _measure(bench, bench.conf(Path(tmp) / "cni.log"), tmp, runs, baseline)


def _measure(
    bench: Bench, conf: dict[str, Any], tmp: str, runs: int, baseline: str | None
) -> list[Row]:
    installs: dict[str, Path | None] = {"": None}
    if baseline:
        installs[" base"] = Path(tmp) / "baseline-bin"
        install_plugins(Path(tmp) / "baseline-bin", baseline)
    for bin_dir in installs.values():
        bench.add_del(0, conf, bin_dir)  # warm-up: claims the block, fills the page cache
    bench.add_del(0, conf, via_node=True)
    floor: list[float] = []
    samples: dict[str, list[Sample]] = {}
    for k in range(1, runs + 1):
        floor.append(bench.python())
        for suffix, bin_dir in installs.items():
            samples.setdefault(f"VERSION{suffix}", []).append(bench.version(bin_dir))
            add, delete = bench.add_del(k, conf, bin_dir)
            samples.setdefault(f"ADD{suffix}", []).append(add)
            samples.setdefault(f"DEL{suffix}", []).append(delete)
        add, delete = bench.add_del(k, conf, via_node=True)
        samples.setdefault("ADD node", []).append(add)
        samples.setdefault("DEL node", []).append(delete)
    names = [command + suffix for suffix in installs for command in ("ADD", "DEL", "VERSION")]
    return [
        Row(
            name,
            [s.wall for s in samples[name]],
            floor,
            [s.requests for s in samples[name]],
            [s.cpu for s in samples[name]],
        )
        for name in [*names, "ADD node", "DEL node"]
    ]


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def format_rows(rows: Sequence[Row], runs: int) -> str:
    cells = ["command", "median ms", "p99 ms", "floor ms", "ratio", "cpu ms", "etcd"]
    lines = [
        f"CNI plugin exec vs `python -I -c pass` ({runs} runs each)",
        ROW_FORMAT.format(*cells),
    ]
    for row in rows:
        median, floor = statistics.median(row.times), statistics.median(row.floor)
        times = (f"{t * 1e3:.1f}" for t in (median, p99(row.times), floor))
        requests = f"{statistics.median(row.requests):g}"
        cpu = f"{statistics.median(row.cpu) * 1e3:.1f}"
        lines.append(ROW_FORMAT.format(row.command, *times, f"{median / floor:.1f}", cpu, requests))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--baseline", metavar="PYTHON", help="another installation's interpreter, run interleaved"
    )
    args = parser.parse_args(argv)
    with Namespaces() as ns:
        rows = run(ns, args.runs, args.baseline)
    print(format_rows(rows, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
