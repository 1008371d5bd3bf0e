"""Fault: CNI ADDs SIGKILLed mid-way, in parallel, then DEL of each: what leaks.

Run with ``.venv/bin/python bench/cni_killed.py [--adds 16] [--seed 1]`` as root. It builds
what bench/cni_exec.py builds (an etcd with a pool, a host namespace, the installed plugins),
then starts --adds ADDs at once, each in its own container namespace, and SIGKILLs each one
(its process group, by PID, so an IPAM plugin it started dies too) after a random delay
between 0 and the wall time of as many parallel ADDs left to finish, measured first (and
DELeted), so kills land in every stage: start-up, IPAM, veth, endpoint write. Then the
runtime's part: a DEL for every container. Counted afterwards (goal 0 each): addresses still
allocated to a container's handle, IPAM handles naming a container, host-side veths,
WorkloadEndpoints, routes to the host-side veths, and the problems `calicoctl ipam check`
reports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.ipam.allocator import IPAMClient
from calico.model import parse_resource
from calico.model.endpoints import WorkloadEndpoint
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cni_exec import NODE, Bench  # bench/ is no package: its sibling

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


@dataclass(frozen=True, slots=True)
class Leaks:
    adds: int
    killed: int  # ADDs the SIGKILL found still running
    left: dict[str, int]  # what the killed and finished ADDs left for the DELs to clean
    addresses: int
    handles: int
    veths: int
    endpoints: int
    routes: int
    ipam_check_problems: int

    @property
    def total(self) -> int:
        return (
            self.addresses
            + self.handles
            + self.veths
            + self.endpoints
            + self.routes
            + self.ipam_check_problems
        )


def _start_add(
    bench: Bench, netns: str, container_id: str, conf: dict[str, object]
) -> programs.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={netns}",
        "CNI_PATH": str(bench.bin_dir),
    }
    proc = programs.start(
        ["nsenter", f"--net=/run/netns/{bench.host}", str(bench.bin_dir / "calico")],
        stdin=programs.PIPE,
        stdout=programs.DEVNULL,
        stderr=programs.DEVNULL,
        env=env,
        new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    return proc


def _kill_at(procs: list[programs.Popen[bytes]], delays: list[float | None]) -> int:
    """SIGKILL each process group at its delay after now (None: let it finish); how many
    the SIGKILL found still running."""
    started, killed = time.monotonic(), 0
    timed = [(p, d) for p, d in zip(procs, delays, strict=True) if d is not None]
    for proc, delay in sorted(timed, key=lambda pd: pd[1]):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        if proc.poll() is None:
            killed += 1
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=120)
    return killed


@dataclass(frozen=True, slots=True)
class Batch:
    netns: list[str]
    ids: list[str]
    span: float  # wall time until the last ADD ended
    killed: int  # ADDs the SIGKILL found still running

    def delete(self, bench: Bench, conf: dict[str, object]) -> None:
        for n, c in zip(self.netns, self.ids, strict=True):
            bench.plugin("DEL", n, c, conf)


def _batch(bench: Bench, conf: dict[str, object], tag: str, delays: list[float | None]) -> Batch:
    """ADDs started at once, each killed at its delay."""
    netns = [bench.ns.add(f"{tag}{k}") for k in range(len(delays))]
    ids = [secrets.token_hex(32) for _ in delays]
    started = time.monotonic()
    procs = [_start_add(bench, n, c, conf) for n, c in zip(netns, ids, strict=True)]
    killed = _kill_at(procs, delays)
    return Batch(netns, ids, time.monotonic() - started, killed)


def _ipam_check(endpoint: str) -> int:
    out = programs.run(
        [CALICOCTL, "ipam", "check", "--show-problem-ips"],
        env={"PATH": os.environ.get("PATH", ""), "ETCD_ENDPOINTS": endpoint},
        timeout=60,
    )
    found = re.search(r"found (\d+) problems", out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"calicoctl ipam check failed: {out.stdout}{out.stderr}")
    return int(found.group(1))


def _count(bench: Bench, backend: EtcdBackend, ids: list[str], endpoint: str) -> dict[str, int]:
    ipam = IPAMClient(backend)
    links = json.loads(bench.ns.exec(bench.host, ["ip", "-j", "link", "show"]).stdout)
    names = [link["ifname"] for link in links]
    routes = bench.ns.exec(bench.host, ["ip", "-4", "route", "show"]).stdout
    weps = ResourceClient(backend).list(WorkloadEndpoint).items
    handles = [s.value.handle_id for s in ipam.store.list_handles()]
    return {
        "addresses": sum(len(ipam.ips_by_handle(f"bench-net.{c}")) for c in ids),
        "handles": sum(1 for h in handles if any(c in h for c in ids)),
        "veths": sum(1 for name in names if name.startswith("cali")),  # the host runs no other
        "endpoints": sum(1 for w in weps if isinstance(w, WorkloadEndpoint)),
        "routes": routes.count(" dev cali"),
        "ipam_check_problems": _ipam_check(endpoint),
    }


def run(ns: Namespaces, adds: int, seed: int) -> Leaks:
    rng = random.Random(seed)
    with (
        EtcdServer() as etcd,
        tempfile.TemporaryDirectory(prefix="calico-cni-kill-") as tmp,
        Bench(ns, etcd, Path(tmp) / "bin") as bench,
    ):
        return _measure(bench, etcd, Path(tmp), adds, rng)


def _measure(bench: Bench, etcd: EtcdServer, tmp: Path, adds: int, rng: random.Random) -> Leaks:
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
    try:
        ResourceClient(backend).apply(parse_resource({
            "apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": NODE}, "spec": {},
        }))  # fmt: skip
        conf = bench.conf(tmp / "cni.log")
        bench.add_del(0, conf)  # claims the block
        unkilled = _batch(bench, conf, "u", [None] * adds)
        unkilled.delete(bench, conf)
        delays: list[float | None] = [rng.uniform(0, unkilled.span) for _ in range(adds)]
        batch = _batch(bench, conf, "k", delays)
        left = _count(bench, backend, batch.ids, etcd.endpoint)  # what DEL has to clean
        batch.delete(bench, conf)
        leaks = _count(bench, backend, batch.ids, etcd.endpoint)
        return Leaks(adds, batch.killed, left, **leaks)
    finally:
        backend.close()


def format_leaks(leaks: Leaks) -> str:
    return (
        f"{leaks.adds} parallel ADDs, {leaks.killed} SIGKILLed mid-way (leaving "
        + ", ".join(f"{n} {what}" for what, n in leaks.left.items())
        + "), then DEL each: "
        f"leaked {leaks.addresses} addresses, {leaks.handles} handles, {leaks.veths} veths, "
        f"{leaks.endpoints} endpoints, {leaks.routes} routes; "
        f"`calicoctl ipam check`: {leaks.ipam_check_problems} problems"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with Namespaces() as ns:
        leaks = run(ns, args.adds, args.seed)
    print(format_leaks(leaks))
    return 0 if leaks.total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
