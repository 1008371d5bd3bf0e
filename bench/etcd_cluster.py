"""The etcd leader killed in a 3-member cluster, with its figures, against a running lab.

Run with ``.venv/bin/python bench/etcd_cluster.py [--rounds 3] [--no-write]`` as root. It
builds a four-host lab whose etcd is a 3-member cluster (`etcd: {members: 3}`; every component
is given all three endpoints and starts on its host's member, `EtcdConfig.for_host`) and, per
round, SIGKILLs the member host-2's Felix is connected to (host-2 holds `later`, so its Felix
programs the policy written next; the member is a follower or the leader, as it happens), then
(that member started again) the leader, found through etcd's maintenance status. Which member a
process is connected to is read from its established TCP connections to the members' client
port (/proc/<pid>/fd and /proc/<pid>/net/tcp). After each kill: seconds until a `calicoctl
apply` on host-1 succeeds, then how long `calicoctl version --client` takes (the process's
start-up at that moment, without the datastore), seconds until that policy change is the
dataplane's answer (a probe of client -> `later` flips), while an allowed flow (client ->
server) is probed throughout. Counted over the whole run: allowed probes that failed, calico
node and Felix processes that restarted (PIDs compared) and datastore re-lists (each watcher
logs "re-listing" when a watch fails over to a full resync instead of resuming): goal 0 each.
The table is written into docs/reliability.md between the `etcd-cluster` markers unless
--no-write; `tests/e2e/test_lab_etcd_cluster.py` runs one round and asserts the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from calico.datastore.config import host_order, parse_endpoints
from calico.lab import etcd, procs
from calico.lab.base import wait_for
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.lab.spec import Workload
from calico.testing.doc_sections import run_stamp, write_section

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
HOSTS = ("host-1", "host-2", "host-3", "host-4")
WATCHER = "host-2"  # its Felix programs `later`: the kill of its member breaks that Felix's watches
LAB = """
name: etcdha
fabric: {ipv4: 198.18.0.0/24}
etcd: {members: 3}
pools: [{name: etcdha-ipv4, cidr: 198.19.0.0/20, blockSize: 26}]
hosts:
  - {name: host-1, ipv4: 198.18.0.11}
  - {name: host-2, ipv4: 198.18.0.12}
  - {name: host-3, ipv4: 198.18.0.13}
  - {name: host-4, ipv4: 198.18.0.14}
workloads:
  - {name: client, host: host-1, namespace: etcdha, labels: {app: client}, ports: [80]}
  - {name: server, host: host-2, namespace: etcdha, labels: {app: server}, ports: [80]}
  - {name: later, host: host-2, namespace: etcdha, labels: {app: later}, ports: [80]}
"""
POLICY = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: etcdha-later}
spec:
  selector: app == 'later'
  types: [Ingress]
  ingress: %s
"""
ALLOW = "[{action: Allow, source: {selector: app == 'client'}}]"


@dataclass(frozen=True, slots=True)
class Kill:
    victim: str  # "watched" (the member WATCHER's Felix is connected to) or "leader"
    role: str  # what the member was when killed: "follower" or "leader"
    member: str
    hosts: int  # hosts with a Felix or calico node connected to the member when killed
    write: float  # seconds from the kill until a calicoctl write succeeded
    dataplane: float  # seconds from that write until the probe's answer changed
    startup: float  # seconds `calicoctl version --client` took right after the write
    cni: bool  # a workload added by the CNI plugin (and removed) while the member was down


@dataclass(frozen=True, slots=True)
class Report:
    floor: float  # seconds a calicoctl write takes with every member up (fastest of 3)
    floor_startup: float  # seconds `calicoctl version --client` took then (fastest of 3)
    kills: list[Kill]
    probes: int  # of the allowed flow, throughout
    probes_failed: int
    restarts: int  # calico node or Felix processes with a new PID
    relists: int  # watchers that re-listed instead of resuming
    resumes: int  # watches that resumed on another member
    placement: dict[str, str]  # host -> the member its Felix was connected to, before any kill
    expected: dict[str, str]  # host -> the first member of its endpoint order
    load: tuple[float, float]  # the machine's 1-minute load average at the start and the end


def _pids(lab: Lab) -> dict[str, int]:
    pids = {}
    for host in HOSTS:
        node = lab.state.proc(f"node/{host}")
        felix = procs.from_pid_file(lab.run_dir(host) / "felix.pid")
        pids.update(
            {f"node/{host}": node.pid if node else 0, f"felix/{host}": felix.pid if felix else 0}
        )
    return pids


def _connections(pid: int, members: list[etcd.Member]) -> Counter[str]:
    """Established TCP connections from process `pid` to each member's client port, by
    member name (read from /proc: the socket inodes of its fds, in its namespace's TCP table)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    names = {(m.address, etcd.CLIENT_PORT): m.name for m in members}
    found: Counter[str] = Counter()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state != "01" or inode not in inodes:  # 01: ESTABLISHED
            continue
        address, port = remote.split(":")
        ip = str(ipaddress.IPv4Address(int(address, 16).to_bytes(4, sys.byteorder)))
        name = names.get((ip, int(port, 16)))
        if name is not None:
            found[name] += 1
    return found


def _felix_member(lab: Lab, host: str, members: list[etcd.Member]) -> str:
    """The member `host`'s Felix holds most connections to (its watches and requests)."""
    felix = procs.from_pid_file(lab.run_dir(host) / "felix.pid")
    found = _connections(felix.pid, members) if felix else Counter[str]()
    if not found:
        raise RuntimeError(f"Felix on {host} has no connection to an etcd member")
    return found.most_common(1)[0][0]


def _hosts_on(lab: Lab, member: etcd.Member, members: list[etcd.Member]) -> int:
    """Hosts whose Felix or calico node holds a connection to `member`."""
    pids = _pids(lab)
    return sum(
        any(pids[f"{kind}/{host}"] and _connections(pids[f"{kind}/{host}"], members)[member.name]
            for kind in ("felix", "node"))
        for host in HOSTS
    )  # fmt: skip


def _logged(lab: Lab, text: str) -> int:
    """Lines of the hosts' logs (calico node, Felix, BGP agent) that say `text`."""
    return sum(
        log.read_text(errors="replace").count(text)
        for host in HOSTS
        for log in lab.run_dir(host).glob("*.log")
    )


RELIST = "re-listing in"  # calico.datastore.syncer, after a watch failed
RESUME = "on another member"  # calico.datastore.etcd_watch, resuming a watch


def _write(lab: Lab, allow: bool, path: Path, started: float, timeout: float = 30.0) -> float:
    """Seconds from `started` until calicoctl on host-1 applied the policy."""
    path.write_text(POLICY % (ALLOW if allow else "[]"))
    argv = ["calicoctl", "apply", "-f", str(path)]
    if wait_for(lambda: lab.exec("host-1", argv, timeout).returncode == 0 or None, timeout, 0.05):
        return time.monotonic() - started
    raise RuntimeError(f"calicoctl apply failed for {timeout:.0f}s")


def _startup(lab: Lab) -> float:
    """Seconds a calicoctl that does not touch the datastore takes on host-1: how much of a
    write's time is the process starting, at the machine's load of the moment."""
    started = time.monotonic()
    lab.exec("host-1", ["calicoctl", "version", "--client"], 30.0)
    return time.monotonic() - started


def _programmed(lab: Lab, allow: bool, timeout: float = 30.0) -> float:
    started = time.monotonic()
    check = lambda: lab.probe("client", "later", timeout=0.2).ok == allow or None  # noqa: E731
    if wait_for(check, timeout, 0.02) is None:
        raise RuntimeError(f"the policy change was not programmed within {timeout:.0f}s")
    return time.monotonic() - started


def _kill(lab: Lab, victim: str, allow: bool, path: Path) -> Kill:
    members = lab.etcd_members()
    leader = wait_for(lambda: etcd.leader(members), 10.0, 0.05)
    if leader is None:
        raise RuntimeError("the cluster has no leader")
    if victim == "leader":
        member = leader
    else:
        watched = _felix_member(lab, WATCHER, members)
        member = next(m for m in members if m.name == watched)
    hosts = _hosts_on(lab, member, members)
    lab.kill_etcd_member(member)
    started = time.monotonic()
    write = _write(lab, allow, path, started)
    startup = _startup(lab)
    dataplane = _programmed(lab, allow)
    cni = _cni_works(lab, f"late-{member.name}")
    lab.restart_etcd_member(member)
    role = "leader" if member == leader else "follower"
    return Kill(victim, role, member.name, hosts, write, dataplane, startup, cni)


def _cni_works(lab: Lab, name: str) -> bool:
    """CNI ADD on host-1, reached from host-2, CNI DEL."""
    lab.add_workload(Workload(name=name, host="host-1", namespace="etcdha", ports=[80]))
    try:
        return wait_for(lambda: lab.probe("server", name).ok or None, 30.0, 0.05) is not None
    finally:
        lab.remove_workload(name)


def _probe_allowed(lab: Lab, stop: threading.Event, out: list[bool]) -> None:
    while not stop.is_set():
        out.append(lab.probe("client", "server", timeout=1.0).ok)
        time.sleep(0.05)


def run(rounds: int = 1, progress: Callable[[str], None] = print) -> Report:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="calico-etcd-cluster-") as tmp:
        spec = load_lab(LAB, "etcd cluster lab", Path(tmp))
        with running_lab(spec, Path(tmp) / "state", lambda m: progress(f"lab: {m}")) as lab:
            path = Path(tmp) / "policy.yaml"
            floor = min(_write(lab, True, path, time.monotonic()) for _ in range(3))
            floor_startup = min(_startup(lab) for _ in range(3))
            _programmed(lab, True)
            members = lab.etcd_members()
            placement = {host: _felix_member(lab, host, members) for host in HOSTS}
            by_url = {m.client_url: m.name for m in members}
            endpoints = parse_endpoints(lab.state.etcd_endpoint)  # the hosts' ETCD_ENDPOINTS
            expected = {host: by_url[host_order(endpoints, host)[0]] for host in HOSTS}
            before, relists, resumes = _pids(lab), _logged(lab, RELIST), _logged(lab, RESUME)
            stop, seen = threading.Event(), list[bool]()
            prober = threading.Thread(target=_probe_allowed, args=(lab, stop, seen))
            prober.start()
            kills = []
            try:
                for i in range(rounds):
                    for victim in ("watched", "leader"):
                        kills.append(_kill(lab, victim, allow=len(kills) % 2 == 1, path=path))
                        progress(f"round {i + 1}: {kills[-1]}")
            finally:
                stop.set()
                prober.join()
            restarts = sum(before[k] != v for k, v in _pids(lab).items())
            relists, resumes = _logged(lab, RELIST) - relists, _logged(lab, RESUME) - resumes
            failed = seen.count(False)
            return Report(
                floor, floor_startup, kills, len(seen), failed, restarts, relists, resumes,
                placement, expected, (load, os.getloadavg()[0]),
            )  # fmt: skip


def _spread(values: list[float]) -> str:
    return f"max {max(values):.2f}s (min {min(values):.2f}s, {len(values)} kills)"


_KINDS = {
    ("watched", "follower"): f"the follower {WATCHER}'s Felix is connected to",
    ("watched", "leader"): f"the leader, {WATCHER}'s Felix connected to it",
    ("leader", "leader"): "the leader",
}


def section(report: Report) -> str:
    when, machine = run_stamp()
    rows = []
    for (victim, role), what in _KINDS.items():
        kills = [k for k in report.kills if (k.victim, k.role) == (victim, role)]
        if not kills:
            continue
        late = max(k.write for k in kills) > report.floor + 1.0
        cni = sum(k.cni for k in kills)
        figure = (
            f"calicoctl write after {_spread([k.write for k in kills])} (floor, every member "
            f"up: {report.floor:.2f}s; calicoctl's start-up alone right after: "
            f"{_spread([k.startup for k in kills])}, floor {report.floor_startup:.2f}s); "
            f"in the dataplane {_spread([k.dataplane for k in kills])}"
            f" after the write; CNI ADD/DEL worked {cni} of {len(kills)}; hosts connected to "
            f"the member: {'/'.join(str(k.hosts) for k in kills)} of {len(HOSTS)}"
            + (" (goal NOT met)" if late or cni < len(kills) else "")
        )
        goal = "write within 1 s of the floor; CNI works"
        rows.append(f"| etcd member SIGKILLed: {what} | {figure} | {goal} | {when} | {machine} |")
    counts = (
        f"allowed probes failed {report.probes_failed} of {report.probes}; "
        f"components restarted {report.restarts}; full resyncs {report.relists} "
        f"(watches resumed on another member: {report.resumes})"
    )
    rows.append(f"| etcd member kills, throughout | {counts} | 0, 0, 0 | {when} | {machine} |")
    placed = ", ".join(f"{host} {member}" for host, member in report.placement.items())
    agree = sum(report.placement[h] == report.expected[h] for h in HOSTS)
    return "\n".join([
        "## etcd cluster (bench/etcd_cluster.py)", "",
        f"Run {when} on {machine} (load average {report.load[0]:.1f} at the start, "
        f"{report.load[1]:.1f} at the end): a {len(HOSTS)}-host lab, etcd of 3 members "
        "(raft heartbeat 50 ms, election timeout 500 ms). Each host's components start on the "
        f"member its endpoint order puts first; Felix's member per host, from its TCP connections: "
        f"{placed} ({agree} of {len(HOSTS)} as the order predicts). Per round the member "
        f"{WATCHER}'s Felix is connected to ({WATCHER} holds `later`, whose policy is written "
        "next), then the leader, SIGKILLed and started again. Probes: client -> server "
        "(allowed) every 50 ms; the write is a GlobalNetworkPolicy flipping client -> later, "
        "by `calicoctl apply` on host-1 (a fresh process that takes the endpoints as listed, "
        "so the floor, the fastest of 3 writes with every member up, is mostly its start-up). "
        "calicoctl's start-up alone (`calicoctl version --client`, no datastore) is timed right "
        "after each write: where it is as slow as the write, the time went to starting a "
        "process on the loaded machine, not to etcd. The first kill's writes deny the flow, "
        "seen when a probe times out (0.2 s, included); the leader kills' writes allow it.", "",
        "| test | figure | goal | date | machine |", "| --- | --- | --- | --- | --- |", *rows,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="watched member + leader kills")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args()
    text = section(run(opts.rounds))
    print(text)
    if not opts.no_write:
        write_section(DOC, "etcd-cluster", text)


if __name__ == "__main__":
    main()
