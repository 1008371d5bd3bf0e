"""What the benchmarks that run the real calico-felix share: pre-populating etcd with
felix_scale's workload, Felix run in a host namespace as an operator runs it, /proc readings,
and the raw reads of the kernel state Felix owns (the floor of a refresh, and of a restart).

Not a benchmark: bench/felix_footprint.py and bench/felix_restart.py import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico import programs
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces
from calico.testing.proc import proc_cpu

sys.path.insert(0, str(Path(__file__).resolve().parent))  # felix_scale, next to this file
from felix_scale import HOST, Host, resource

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
FELIX = str(Path(sys.executable).parent / "calico-felix")
IN_SYNC = "dataplane in sync with the datastore"
KERNEL_READS = (  # Felix's backend in a fresh namespace is nft ("auto" with nothing there)
    "iptables-nft-save",
    "ip6tables-nft-save",
    "ipset save",
    "ip -j -4 route show",
    "ip -j -6 route show",
    "ip -j link show",
    "ip -j -4 neigh show",
    "ip -j -6 neigh show",
)
"""Every table of both families, every IP set, the routes, links and neighbours: the least
a process must read to know the kernel state Felix owns (sysctls aside), one shell line each."""


# -- figures ---------------------------------------------------------------------------------


def record(section: str, heading: str, script: str, argv: Sequence[str], table: str,
           load: tuple[float, float]) -> None:  # fmt: skip
    """Writes `table` as docs/benchmarks.md's `section`, with the date, machine, the load
    average at the run's start and end, and the command."""
    when, machine = run_stamp()
    text = "\n".join([
        f"## {heading} (`bench/{script}`)",
        "",
        f"{when}; {machine}; {os.cpu_count()} CPUs; load average {load[0]:.1f} at the start,"
        f" {load[1]:.1f} at the end (other sessions share the machine: absolute times and CPU"
        " shares are inflated, the ratios less so).",
        f"Command: `{' '.join(['.venv/bin/python', f'bench/{script}', *argv])}`",
        "",
        "```",
        table,
        "```",
    ])  # fmt: skip
    write_section(DOC, section, text, title="# Benchmark figures")


# -- /proc -----------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon... of /proc/<pid>/status, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        words = value.split()
        if len(words) == 2 and words[1] == "kB":
            out[name] = int(words[0]) * 1024
    return out


@dataclass(frozen=True)
class CpuTimes:
    """/proc/<pid>/stat's CPU seconds: the process, and its waited-for children."""

    at: float
    own: float
    children: float

    @classmethod
    def read(cls, pid: int) -> CpuTimes:
        at = time.monotonic()
        own, children = proc_cpu(f"/proc/{pid}/stat")
        return cls(at, own, children)

    def percent(self, later: CpuTimes) -> tuple[float, float]:
        """% of one core between self and `later`: (own, own + children)."""
        wall = later.at - self.at
        own = later.own - self.own
        return 100 * own / wall, 100 * (own + later.children - self.children) / wall


# -- etcd ------------------------------------------------------------------------------------


def populate(backend: EtcdBackend, docs: Iterable[dict[str, Any]], threads: int = 8) -> int:
    """Creates every resource (in parallel, as many clients would); returns how many."""
    client = ResourceClient(backend)
    resources = [resource(doc) for doc in docs]
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(client.create, resources):
            pass
    return len(resources)


# -- Felix -----------------------------------------------------------------------------------


class FelixRun:
    """calico-felix in the host namespace, as an operator runs it. `path_first`: a directory
    searched before PATH (a bench's wrappers that count the commands Felix runs)."""

    def __init__(
        self,
        ns: Namespaces,
        host: Host,
        etcd: EtcdServer,
        run_dir: Path,
        path_first: Path | None = None,
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log = run_dir / "felix.log"
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env = {
            "PATH": f"{path_first}:{path}" if path_first else path,
            "NODENAME": HOST,
            "ETCD_ENDPOINTS": etcd.unix_endpoint,
            "CALICO_RUN_DIR": str(run_dir),
        }
        self._seen = self.log.stat().st_size if self.log.exists() else 0  # a restart appends
        self.started = time.monotonic()
        self.proc = ns.popen(host.name, [FELIX], env=env, log=str(self.log))
        self.pid = self.proc.pid  # `ip netns exec` and the script's interpreter exec in place

    def wait_in_sync(self, timeout: float) -> float:
        """Seconds from start until this run logs that it is in sync."""
        deadline = self.started + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"calico-felix exited {self.proc.returncode}:\n{self.tail()}")
            with self.log.open("rb") as log:
                log.seek(self._seen)
                if IN_SYNC.encode() in log.read():
                    return time.monotonic() - self.started
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"calico-felix not in sync after {timeout:.0f} s:\n{self.tail()}"
                )
            time.sleep(0.02)

    def settle(self, quiet: float, window: float = 2.0, cap: float = 120.0) -> float:
        """Waits until a `window` uses under `quiet` % of a core (status writes, the calc
        graph's tail, deferred work done), at most `cap` seconds; returns the time taken."""
        started = time.monotonic()
        before = CpuTimes.read(self.pid)
        while time.monotonic() - started < cap:
            time.sleep(window)
            after = CpuTimes.read(self.pid)
            if before.percent(after)[1] < quiet:
                break
            before = after
        return time.monotonic() - started

    def idle(self, seconds: float) -> tuple[float, float, float]:
        """CPU % of one core over `seconds` (own, with children) and the busiest ~1 s."""
        first = last = CpuTimes.read(self.pid)
        peak = 0.0
        end = first.at + seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            sample = CpuTimes.read(self.pid)
            peak = max(peak, last.percent(sample)[1])
            last = sample
            if self.proc.poll() is not None:
                raise RuntimeError(f"calico-felix exited while idle:\n{self.tail()}")
        own, everything = first.percent(last)
        return own, everything, peak

    def kill(self) -> None:
        """kill -9, by PID (its own session), and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: by PID (its own session), never by name."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except programs.TimeoutExpired:
            self.kill()

    def own_log(self) -> str:
        """What this run (not an earlier one into the same file) has logged so far."""
        with self.log.open("rb") as log:
            log.seek(self._seen)
            return log.read().decode(errors="replace")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
