"""Benchmark: the datapath with 1,000 policies against the same hosts with no policy (P7).

Run with ``.venv/bin/python bench/datapath.py [--policies 1000] [--reps 5] [--seconds 5]``
as root.

One lab (`calico.lab`: etcd, `calico node run` on two hosts of one bridged subnet, BIRD,
routed, no overlay) with one workload per host: `client` on h0 and `server` on h1, both in
namespace `bench` (open profile `kns.bench`). Phases alternate in the same run, A B, B A,
A B... (a rep is a back-to-back pair, in alternating order, so the machine's load drift and
any first-or-second effect fall on both), `--reps` times each:

- A: no policy; the namespace profile lets the flow through.
- B: `--policies` policies. 2 % of them (at least one each way) select the ends: egress
  policies on the client, ingress policies on the server, each with rules the flow's packets
  do not match (a quarantine selector, other peers' selectors and ports, other CIDRs) and
  only the last (highest order) with the rules allowing the flow. The others select
  workloads that do not exist (half global, half namespaced), with the same kind of rules.

Before a phase is measured, Felix on both hosts is in sync: its metrics (resync state in
sync, cluster policy count, local active policy count) and the kernel's chains on the
flow's path hold as many rules as the same tables rendered from the datastore. Then the lab
is quiet: its processes together under 10 % of a core over a second (a guard: a phase
measured while Felix or etcd still worked on the switch would pay for it, not for the rules).

Per phase: iperf3 TCP (one stream, receiver's Gbit/s), iperf3 UDP with 64-byte payloads at
`-b 0` (datagrams received per second, and loss), ping RTT p50 (`--pings` at 10 ms). Ratios
are B / A per rep, median and worst rep (the p99 of a handful of reps); ping: B - A. The
noise, in the same run: the ratio of one phase measured twice running (the alternating
order puts the same phase at the end of one pair and the start of the next).

Rules per packet (once per phase): the rendered tables walked by the project's packet walker
(`calico.rules.packet_walk`, what `calicoctl policy trace` uses) for the flow's first packet,
and the kernel's own per-rule packet counters (`iptables-save -c` before and after) for
`--count` UDP datagrams to the server's port, each from a new socket (every one a new
connection) and then all from one socket whose handshake the server answered (established):
rules evaluated per forwarded packet, derived from which rules matched and the chains' order.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from calico import programs
from calico.ctl.trace_source import Snapshot, host_reports, workload_end
from calico.lab import netns
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.lab.spec import LabSpec
from calico.model import parse_resource
from calico.model.keys import key_of
from calico.rules.packet_walk import FORWARD_PATH, Frame, Packet, Tables, walk
from calico.rules.trace import HostInput, render_hosts
from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.iperf import IPERF_PORT, in_ns, ping_rtts, tcp_gbps, udp_rate
from calico.testing.proc import proc_cpu

NAMESPACE = "bench"
CLIENT, SERVER = "client", "server"
HOSTS = ("h0", "h1")
SYNC_TIMEOUT = 300.0
QUIET = 0.10  # of one core: the lab's processes all idle (Felix alone idles at ~0.02)
FETCH = "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"  # noqa: E501
METRICS_URL = "http://127.0.0.1:9091/metrics"
# Answers only the handshake datagram ("hello"): the flow's conntrack entry becomes
# ESTABLISHED, and the counted datagrams get no reply (and, being read, no ICMP error).
UDP_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(64)
    if data == b"hello":
        s.sendto(b"hi", peer)
"""
# mode new: each datagram from a new socket (a new connection each); hello: the handshake
# from SOURCE_PORT; same: every datagram from SOURCE_PORT (the established connection).
UDP_SEND = """
import socket, sys, time
address, n, mode = (sys.argv[1], int(sys.argv[2])), int(sys.argv[3]), sys.argv[4]
def sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    return s
if mode == "hello":
    s = sock(int(sys.argv[5]))
    s.settimeout(5)
    s.sendto(b"hello", address)
    s.recvfrom(64)
    sys.exit(0)
one = sock(int(sys.argv[5]))
for i in range(n):
    s = sock(0) if mode == "new" else one
    s.sendto(b"x" * 18, address)
    if mode == "new":
        s.close()
    if i % 50 == 49:
        time.sleep(0.002)  # paced: no drop in a backlog before the rules count it
"""
SOURCE_PORT = 40000


# -- the lab and the policies -------------------------------------------------------------------


def lab_file(resources: Sequence[str]) -> str:
    doc = {
        "name": "benchdp",
        "fabric": {"ipv4": "198.18.0.0/24"},
        "pools": [{"name": "bench", "cidr": "198.19.0.0/20", "blockSize": 26}],
        "hosts": [{"name": h, "ipv4": f"198.18.0.{11 + i}"} for i, h in enumerate(HOSTS)],
        "workloads": [
            {"name": CLIENT, "host": "h0", "namespace": NAMESPACE,
             "labels": {"app": CLIENT, "tier": "frontend"}},
            {"name": SERVER, "host": "h1", "namespace": NAMESPACE,
             "labels": {"app": SERVER, "tier": "backend"}},
        ],
        "resources": list(resources),
    }  # fmt: skip
    return yaml.safe_dump(doc)


FELIX_CONFIG = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "FelixConfiguration",
    "metadata": {"name": "default"},
    "spec": {"prometheusMetricsEnabled": True},
}


def selected_per_side(policies: int) -> int:
    return max(1, policies // 50)


def policy_docs(policies: int) -> list[dict[str, Any]]:
    """`policies` documents: per side `selected_per_side` selecting the flow's ends (the last
    of each side allowing the flow), the rest selecting nothing that exists."""
    k = selected_per_side(policies)
    docs = [_ingress(i, last=i == k - 1) for i in range(k)]
    docs += [_egress(i, last=i == k - 1) for i in range(k)]
    docs += [_unselected(p) for p in range(max(0, policies - 2 * k))]
    return docs[:policies]


def _net(i: int) -> str:
    return f"198.18.{200 + i % 50}.0/24"


def _ingress(i: int, last: bool) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {"action": "Deny", "source": {"selector": "has(quarantine)"}},
        {"action": "Allow", "protocol": "TCP", "source": {"selector": f"app == 'peer{i}'"},
         "destination": {"ports": [8000 + i, 443]}},
        {"action": "Allow", "protocol": "UDP", "source": {"nets": [_net(i)]},
         "destination": {"ports": [53]}},
    ]  # fmt: skip
    if last:
        rules += [
            {"action": "Allow", "protocol": proto, "source": {"selector": f"app == '{CLIENT}'"},
             "destination": {"ports": [IPERF_PORT]}}
            for proto in ("TCP", "UDP")
        ]  # fmt: skip
        rules.append({"action": "Allow", "protocol": "ICMP",
                      "source": {"selector": f"app == '{CLIENT}'"}})  # fmt: skip
    spec = {"order": 100 + i, "selector": f"app == '{SERVER}' && tier == 'backend'",
            "types": ["Ingress"], "ingress": rules}  # fmt: skip
    meta = {"name": f"in{i}", "namespace": NAMESPACE}
    return {"apiVersion": FELIX_CONFIG["apiVersion"], "kind": "NetworkPolicy", "metadata": meta,
            "spec": spec}  # fmt: skip


def _egress(i: int, last: bool) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {"action": "Deny", "destination": {"selector": "has(quarantine)"}},
        {"action": "Allow", "protocol": "TCP", "destination": {"selector": f"app == 'db{i}'",
         "ports": [5432]}},
        {"action": "Allow", "protocol": "UDP", "destination": {"nets": [_net(i)],
         "ports": [53]}},
    ]  # fmt: skip
    if last:
        rules += [
            {"action": "Allow", "protocol": proto,
             "destination": {"selector": f"app == '{SERVER}'", "ports": [IPERF_PORT]}}
            for proto in ("TCP", "UDP")
        ]  # fmt: skip
        rules.append({"action": "Allow", "protocol": "ICMP",
                      "destination": {"selector": f"app == '{SERVER}'"}})  # fmt: skip
    spec = {"order": 100 + i, "selector": f"app == '{CLIENT}'", "types": ["Egress"],
            "egress": rules}  # fmt: skip
    return {"apiVersion": FELIX_CONFIG["apiVersion"], "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"out{i}"}, "spec": spec}  # fmt: skip


def _unselected(p: int) -> dict[str, Any]:
    ingress = [
        {"action": "Deny", "source": {"selector": "has(quarantine)"}},
        {"action": "Allow", "protocol": "TCP", "source": {"selector": f"app == 'app{p + 1}'"},
         "destination": {"ports": [8000 + p % 20, 443]}},
        {"action": "Allow", "protocol": "UDP", "source": {"nets": [_net(p)]},
         "destination": {"ports": [53]}},
    ]  # fmt: skip
    egress = [{"action": "Allow", "protocol": "TCP",
               "destination": {"selector": f"app == 'app{p + 3}'", "ports": [5432]}}]  # fmt: skip
    spec = {"order": p % 100, "selector": f"app == 'app{p}'", "ingress": ingress,
            "egress": egress}  # fmt: skip
    api = FELIX_CONFIG["apiVersion"]
    if p % 2:
        meta = {"name": f"pol{p}", "namespace": NAMESPACE}
        return {"apiVersion": api, "kind": "NetworkPolicy", "metadata": meta, "spec": spec}
    return {"apiVersion": api, "kind": "GlobalNetworkPolicy", "metadata": {"name": f"pol{p}"},
            "spec": spec}  # fmt: skip


def apply_policies(lab: Lab, docs: Sequence[dict[str, Any]]) -> None:
    client = lab.client
    for doc in docs:
        client.create(parse_resource(doc))


def delete_policies(lab: Lab, docs: Sequence[dict[str, Any]]) -> None:
    client = lab.client
    for doc in docs:
        key = key_of(parse_resource(doc))
        client.delete(key.kind, key.name, key.namespace)


# -- Felix in sync --------------------------------------------------------------------------------


def metrics(lab: Lab, host: str) -> dict[str, float]:
    argv = in_ns(lab.netns(host), [sys.executable, "-c", FETCH, METRICS_URL])
    out = programs.run(argv, timeout=10).stdout
    values = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("felix_") and value:
            values[name] = float(value)
    return values


@dataclass(frozen=True)
class Flow:
    """The measured flow's packet on each host: egress on h0, ingress on h1."""

    client_ip: str
    server_ip: str
    client_iface: str
    server_iface: str

    def packets(self, protocol: int, port: int | None) -> dict[str, Packet]:
        ported = {"src_port": 40000, "dst_port": port} if port else {"icmp_type": 8, "icmp_code": 0}
        common = {"ip_version": 4, "src": self.client_ip, "dst": self.server_ip,
                  "protocol": protocol, **ported}  # fmt: skip
        return {
            "h0": Packet(**common, in_iface=self.client_iface, out_iface="eth0"),  # type: ignore[arg-type]
            "h1": Packet(**common, in_iface="eth0", out_iface=self.server_iface),  # type: ignore[arg-type]
        }


def rendered(lab: Lab) -> tuple[Flow, dict[str, Tables]]:
    """The flow's ends and each host's tables rendered from the datastore as it is now."""
    snapshot = Snapshot.load(lab.client)
    src = workload_end(snapshot, f"{NAMESPACE}/{CLIENT}", 4)
    dst = workload_end(snapshot, f"{NAMESPACE}/{SERVER}", 4)
    reports = host_reports(lab.client, HOSTS)
    hosts = {h: HostInput(snapshot.host_state(h), reports[h].rules, "eth0") for h in HOSTS}
    tables = {h: t.tables for h, t in render_hosts(hosts, 4, snapshot.considered()).items()}
    flow = Flow(src.address, dst.address, src.iface or "", dst.iface or "")
    return flow, tables


def walked_chains(frame: Frame) -> Iterator[tuple[str, str]]:
    for step in frame.steps:
        if step.child is not None:
            yield step.child.table, step.child.chain
            yield from walked_chains(step.child)


def wait_in_sync(lab: Lab, policies: int, local: int) -> None:
    """Felix's metrics say in sync with `policies` in the cluster and `local` active on each
    host; then the kernel's chains on the flow's path match the rendered ones."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    want = {"felix_resync_state": 3.0, "felix_cluster_num_policies": float(policies),
            "felix_active_local_policies": float(local)}  # fmt: skip
    for host in HOSTS:
        while (got := {k: metrics(lab, host).get(k) for k in want}) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}: Felix not in sync: {got}, want {want}")
            time.sleep(0.5)
    flow, tables = rendered(lab)
    for host, packet in flow.packets(17, IPERF_PORT).items():
        walked = walk(tables[host], packet, FORWARD_PATH)
        chains = {c for f in walked.frames for c in walked_chains(f)}
        want_rules = {c: len(tables[host].chains[c[0]][c[1]].rules) for c in chains}
        while (got_rules := _kernel_lengths(lab, host, chains)) != want_rules:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}: kernel chains {got_rules}, rendered {want_rules}")
            time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    try:
        return proc_cpu(f"/proc/{pid}/stat")[0]
    except OSError:
        return 0.0  # gone


def wait_quiet(lab: Lab) -> float:
    """Until the lab's processes (Felix, BIRD, calico node, etcd: every process in its
    namespaces) use under QUIET of one core over a second; returns the seconds waited."""
    start = time.monotonic()
    while True:
        pids = [p for ns in lab.state.namespaces for p in netns.pids(ns)]
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(1.0)
        busy = sum(cpu_seconds(p) for p in pids) - before
        if busy < QUIET or time.monotonic() - start > SYNC_TIMEOUT:
            return time.monotonic() - start


def _kernel_lengths(
    lab: Lab, host: str, chains: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    saved = parse_save(save(lab, host))
    return {(t, c): len(saved[t][c].rules) for t, c in chains if c in saved.get(t, {})}


# -- the kernel's counters ------------------------------------------------------------------------

_CHAIN = re.compile(r"^:(\S+) ")
_RULE = re.compile(r"^\[(\d+):\d+\] -A (\S+) (.*)$")
_TERMINAL = {"ACCEPT", "DROP", "REJECT", "MASQUERADE", "SNAT", "DNAT", "REDIRECT"}


@dataclass
class KernelRule:
    packets: int
    target: str
    goto: bool
    unconditional: bool = False  # no match but its comment: every packet matches it


@dataclass
class KernelChain:
    rules: list[KernelRule] = field(default_factory=list)


Saved = dict[str, dict[str, KernelChain]]


def save(lab: Lab, host: str) -> str:
    """`iptables-save -c` of the backend Felix uses (the other holds no cali- chains)."""
    for tool in ("iptables-nft-save", "iptables-legacy-save"):
        out = programs.run(in_ns(lab.netns(host), [tool, "-c"]), timeout=60).stdout
        if ":cali-" in out:
            return out
    raise RuntimeError(f"{host}: no Calico chains in either iptables backend")


def parse_save(text: str) -> Saved:
    tables: Saved = {}
    table: dict[str, KernelChain] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = tables.setdefault(line[1:].strip(), {})
        elif found := _CHAIN.match(line):
            table[found.group(1)] = KernelChain()
        elif found := _RULE.match(line):
            words = shlex.split(found.group(3))
            target, goto = "", False
            for i, word in enumerate(words[:-1]):
                if word in ("-j", "-g"):
                    target, goto = words[i + 1], word == "-g"
            bare = [w for i, w in enumerate(words) if not _comment(words, i)]
            rule = KernelRule(int(found.group(1)), target, goto, bare[:1] in (["-j"], ["-g"]))
            table[found.group(2)].rules.append(rule)
    return tables


class Rewritten(RuntimeError):
    """Felix rewrote a chain between two saves: its counters restarted."""


def _comment(words: list[str], i: int) -> bool:
    """words[i] belongs to a `-m comment --comment TEXT` match."""
    return any(words[j : j + 3] == ["-m", "comment", "--comment"] for j in range(i - 3, i + 1)
               if j >= 0)  # fmt: skip


def delta(before: Saved, after: Saved) -> Saved:
    """Packets counted between the two saves, rule by rule (the layout must not change)."""
    out: Saved = {}
    for name, chains in after.items():
        out[name] = {}
        for chain, now in chains.items():
            was = before.get(name, {}).get(chain, KernelChain())
            rules = [KernelRule(n.packets - w.packets, n.target, n.goto, n.unconditional)
                     for w, n in zip(was.rules, now.rules, strict=False)]  # fmt: skip
            layout = [(r.target, r.goto) for r in was.rules] == [
                (r.target, r.goto) for r in now.rules
            ]
            if not layout or any(r.packets < 0 for r in rules):
                raise Rewritten(f"{name} {chain} was rewritten while counting")
            out[name][chain] = KernelChain(rules)
    return out


def evaluations(table: dict[str, KernelChain], kernel_chain: str) -> tuple[int, int]:
    """(packets that entered the kernel chain, rule evaluations they made in its table):
    every packet still in a chain is evaluated by its next rule; matched terminal rules and
    the part of a jump that did not return take packets out."""

    def run(name: str, entered: int, depth: int = 0) -> tuple[int, int]:  # evals, returned
        if depth > 64:
            raise RuntimeError(f"chains nest too deep at {name}")
        remaining, evals, returned = entered, 0, 0
        for rule in table[name].rules:
            evals += max(remaining, 0)
            if rule.target in table:
                sub_evals, sub_returned = run(rule.target, rule.packets, depth + 1)
                evals += sub_evals
                remaining -= rule.packets if rule.goto else rule.packets - sub_returned
                returned += sub_returned if rule.goto else 0
            elif rule.target == "RETURN":
                remaining -= rule.packets
                returned += rule.packets
            elif rule.target in _TERMINAL:
                remaining -= rule.packets
        return evals, returned + max(remaining, 0)

    chain = table[kernel_chain]
    if not chain.rules:
        return 0, 0  # nothing of ours (or anyone's) to evaluate
    if not chain.rules[0].unconditional:
        raise RuntimeError(f"{kernel_chain} does not start with Felix's unconditional hook")
    # Every packet entering the kernel chain matches its first rule, Felix's hook (the
    # chain's policy counter is no help: iptables-nft leaves it at zero).
    entered = chain.rules[0].packets
    return entered, run(kernel_chain, entered)[0]


# The kernel chains a forwarded packet crosses: the walker's path plus nat (new connections
# only) and mangle's FORWARD and POSTROUTING.
KERNEL_PATH = (("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"),
               ("mangle", "FORWARD"), ("filter", "FORWARD"), ("mangle", "POSTROUTING"),
               ("nat", "POSTROUTING"))  # fmt: skip


@dataclass(frozen=True)
class Counted:
    """Rule evaluations per forwarded packet on one host, by kernel chain (kernel counters)."""

    forwarded: int
    per_chain: dict[tuple[str, str], float]  # (table, kernel chain) -> evaluations per packet

    def total(self, chains: Sequence[tuple[str, str]] | None = None) -> float:
        return sum(v for c, v in self.per_chain.items() if chains is None or c in chains)


def counted(before: Saved, after: Saved) -> Counted:
    moved = delta(before, after)
    forwarded, _ = evaluations(moved["filter"], "FORWARD")
    per_chain = {
        (table, chain): evaluations(moved[table], chain)[1] / max(forwarded, 1)
        for table, chain in KERNEL_PATH
        if chain in moved.get(table, {})
    }
    return Counted(forwarded, per_chain)


@contextmanager
def udp_sink(ns: str) -> Iterator[None]:
    """The server's UDP socket on the flow's port (killed by its PID afterwards)."""
    proc = programs.start(in_ns(ns, [sys.executable, "-c", UDP_SINK, str(IPERF_PORT)]))
    try:
        time.sleep(0.3)
        yield
    finally:
        proc.kill()
        proc.wait()


def count_rules(lab: Lab, count: int) -> dict[tuple[str, str], Counted]:
    """(host, "new" | "established") -> rules per packet, from the kernel's counters."""
    server = lab.state.workloads[SERVER].ipv4 or ""
    client_ns = lab.netns_of(CLIENT)

    def send(mode: str, n: int) -> None:
        argv = [sys.executable, "-c", UDP_SEND, server, str(IPERF_PORT), str(n), mode,
                str(SOURCE_PORT)]  # fmt: skip
        programs.run(in_ns(client_ns, argv), timeout=120, check=True)

    out = {}
    with udp_sink(lab.netns_of(SERVER)):
        send("hello", 1)
        for kind, mode in (("new", "new"), ("established", "same")):
            for attempt in range(3):
                before = {h: parse_save(save(lab, h)) for h in HOSTS}
                send(mode, count)
                time.sleep(0.2)
                try:
                    for h in HOSTS:
                        out[h, kind] = counted(before[h], parse_save(save(lab, h)))
                    break
                except Rewritten:
                    if attempt == 2:
                        raise
    return out


def walked_rules(lab: Lab) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
    """(host, protocol) -> rules the walker evaluates for the flow's first packet, in all and
    per chain (the chains of the FORWARD path)."""
    flow, tables = rendered(lab)
    out = {}
    for proto, number, port in (("udp", 17, IPERF_PORT), ("tcp", 6, IPERF_PORT), ("icmp", 1, None)):
        for host, packet in flow.packets(number, port).items():
            walked = walk(tables[host], packet, FORWARD_PATH)
            if walked.verdict != "ACCEPT":
                raise RuntimeError(f"{host}: the walker drops the {proto} flow")
            per_chain: dict[str, int] = {}
            for frame in walked.frames:
                _count_steps(frame, per_chain)
            out[host, proto] = (sum(per_chain.values()), per_chain)
    return out


def _count_steps(frame: Frame, per_chain: dict[str, int]) -> None:
    key = f"{frame.table} {frame.chain}"
    per_chain[key] = per_chain.get(key, 0) + len(frame.steps)
    for step in frame.steps:
        if step.child is not None:
            _count_steps(step.child, per_chain)


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Sample:
    tcp_gbps: float
    udp_pps: float
    udp_loss: float
    ping_p50_us: float


@dataclass
class PhaseCost:
    walked: dict[tuple[str, str], tuple[int, dict[str, int]]]
    counted: dict[tuple[str, str], Counted]


@dataclass
class Result:
    policies: int
    a: list[Sample] = field(default_factory=list)
    b: list[Sample] = field(default_factory=list)
    order: list[tuple[str, Sample]] = field(default_factory=list)  # as measured
    cost: dict[str, PhaseCost] = field(default_factory=dict)
    settle: dict[str, list[float]] = field(default_factory=lambda: {"A": [], "B": []})


def measure(lab: Lab, seconds: float, pings: int) -> Sample:
    server_ns, client_ns = lab.netns_of(SERVER), lab.netns_of(CLIENT)
    address = lab.state.workloads[SERVER].ipv4 or ""
    tcp = tcp_gbps(server_ns, client_ns, address, seconds)
    udp = udp_rate(server_ns, client_ns, address, seconds)
    rtts = ping_rtts(client_ns, address, pings, 0.01)
    if len(rtts) < pings // 2:
        raise RuntimeError(f"ping: {len(rtts)} of {pings} answered")
    return Sample(tcp, udp.received_pps, udp.loss, statistics.median(rtts))


def run(
    policies: int,
    reps: int,
    seconds: float,
    pings: int = 200,
    count: int = 2000,
    progress: Callable[[str], None] = lambda _m: None,
) -> Result:
    docs = policy_docs(policies)
    local = selected_per_side(policies) if policies else 0
    result = Result(policies)
    with tempfile.TemporaryDirectory(prefix="calico-bench-datapath-") as tmp:
        root = Path(tmp)
        (root / "felix.yaml").write_text(yaml.safe_dump(FELIX_CONFIG))
        spec: LabSpec = load_lab(lab_file(["felix.yaml"]), "bench lab", root)
        with running_lab(spec, root / "lab") as lab:
            policies_on = False
            for rep in range(reps):
                for phase in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                    progress(f"rep {rep + 1}/{reps} phase {phase}: wait for Felix")
                    if phase == "B" and not policies_on:
                        apply_policies(lab, docs)
                    elif phase == "A" and policies_on:
                        delete_policies(lab, docs)
                    policies_on = phase == "B"
                    wait_in_sync(lab, len(docs) if policies_on else 0, local if policies_on else 0)
                    result.settle[phase].append(wait_quiet(lab))
                    if phase not in result.cost:
                        progress(f"phase {phase}: rules per packet")
                        result.cost[phase] = PhaseCost(walked_rules(lab), count_rules(lab, count))
                    progress(f"rep {rep + 1}/{reps} phase {phase}: measure")
                    sample = measure(lab, seconds, pings)
                    (result.a if phase == "A" else result.b).append(sample)
                    result.order.append((phase, sample))
    return result


# -- report ---------------------------------------------------------------------------------------


def format_result(r: Result) -> str:
    med = statistics.median
    rows = [f"{'metric':<22} {'A no policy':>12} {'B policies':>12} {'B/A med':>8} "
            f"{'worst':>8} {'same phase: med [range]':>24} {'target':>10}"]  # fmt: skip
    # The same phase measured twice back to back (where one pair ends and the next, in the
    # other order, starts): nothing changed between them, so their ratios are the noise.
    again = [(x, y) for (p, x), (q, y) in zip(r.order, r.order[1:], strict=False) if p == q]
    pairs = []
    metrics_: list[tuple[str, Callable[[Sample], float], str, str]] = [
        ("TCP Gbit/s", lambda s: s.tcp_gbps, "{:.2f}", ">= 0.90"),
        ("UDP-64B kpps received", lambda s: s.udp_pps / 1e3, "{:.1f}", ">= 0.80"),
        ("UDP-64B loss %", lambda s: s.udp_loss * 100, "{:.1f}", ""),
    ]
    for name, get, fmt, target in metrics_:
        a, b = [get(s) for s in r.a], [get(s) for s in r.b]
        ratios = [y / x for x, y in zip(a, b, strict=True) if x]
        noise = [get(y) / get(x) for x, y in again if get(x)]
        worst = min(ratios) if ratios else float("nan")  # low is bad for both rates
        ratio = f"{med(ratios):>8.3f} {worst:>8.3f}" if target else f"{'':>8} {'':>8}"
        spread = ""
        if noise and target:
            spread = f"{med(noise):.3f} [{min(noise):.2f}..{max(noise):.2f}]"
        rows.append(f"{name:<22} {fmt.format(med(a)):>12} {fmt.format(med(b)):>12} {ratio} "
                    f"{spread:>24} {target:>10}")  # fmt: skip
        if target:
            pairs.append(f"  {name} B/A: " + " ".join(f"{x:.2f}" for x in ratios))
            pairs.append(f"  {name} same phase again: " + " ".join(f"{x:.2f}" for x in noise))
    a, b = [s.ping_p50_us for s in r.a], [s.ping_p50_us for s in r.b]
    added = [y - x for x, y in zip(a, b, strict=True)]
    noise = [y.ping_p50_us - x.ping_p50_us for x, y in again]
    added_med, added_worst = f"{med(added):+.1f}", f"{max(added):+.1f}"
    spread = f"{med(noise):+.1f} [{min(noise):+.1f}..{max(noise):+.1f}]" if noise else ""
    rows.append(f"{'ping p50 us':<22} {med(a):>12.1f} {med(b):>12.1f} {added_med:>8} "
                f"{added_worst:>8} {spread:>24} {'+<= 20 us':>10}")  # fmt: skip
    pairs.append("  ping p50 B - A us: " + " ".join(f"{x:+.1f}" for x in added))
    pairs.append("  ping p50 same phase again us: " + " ".join(f"{x:+.1f}" for x in noise))
    rows.append("A, B: medians over the reps; B/A med: the median of the pairs' ratios (ping: of "
                "B - A); worst: the worst pair; same phase: the later over the earlier of "
                "one phase measured twice running, nothing changed (the noise). "
                "In run order:")  # fmt: skip
    rows += pairs
    waits = "; ".join(f"{p} median {med(w):.1f} s, max {max(w):.1f} s"
                      for p, w in sorted(r.settle.items()) if w)  # fmt: skip
    rows.append(f"  waited for the lab to be quiet after in sync: {waits}")
    rows.append("")
    rows.append("rules evaluated per forwarded packet (h0: the client's egress, h1: the server's "
                "ingress); walker: the project's packet walker on the rendered tables, first "
                "packet; kernel: per-rule counters")  # fmt: skip
    rows.append(f"{'phase':<6}{'host':<5}{'walker udp/tcp/icmp':>20}{'kernel same chains':>19}"
                f"{'kernel all first':>17}{'established':>12}")  # fmt: skip
    for phase, cost in sorted(r.cost.items()):
        for host in HOSTS:
            walked = "/".join(str(cost.walked[host, p][0]) for p in ("udp", "tcp", "icmp"))
            new, est = cost.counted[host, "new"], cost.counted[host, "established"]
            rows.append(f"{phase:<6}{host:<5}{walked:>20}{new.total(FORWARD_PATH):>19.1f}"
                        f"{new.total():>17.1f}{est.total():>12.1f}")  # fmt: skip
    cost_b = r.cost.get("B")
    if cost_b is not None:
        rows.append("kernel by chain, phase B (first / established):")
        for host in HOSTS:
            new, est = cost_b.counted[host, "new"], cost_b.counted[host, "established"]
            parts = [f"{t} {c} {new.per_chain[t, c]:.1f}/{est.per_chain.get((t, c), 0):.1f}"
                     for t, c in KERNEL_PATH if (t, c) in new.per_chain]  # fmt: skip
            rows.append(f"  {host}: " + ", ".join(parts) + f" ({new.forwarded} forwarded)")
        rows.append("walker by chain, phase B (first UDP packet):")
        for host in HOSTS:
            per_chain = cost_b.walked[host, "udp"][1]
            rows.append(f"  {host}: " + ", ".join(f"{c} {n}" for c, n in per_chain.items() if n))
    return "\n".join(row.rstrip() for row in rows)


DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "datapath"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--count", type=int, default=2000, help="datagrams per counter reading")
    parser.add_argument("--write-doc", action="store_true", help=f"update {DOC.name}")
    args = parser.parse_args(argv)
    if args.policies < 2 or args.reps < 1 or args.seconds <= 0 or args.pings < 2 or args.count < 10:
        parser.error("--policies >= 2, --reps >= 1, --seconds > 0, --pings >= 2, --count >= 10")
    load_before = os.getloadavg()
    result = run(args.policies, args.reps, args.seconds, args.pings, args.count,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    load_after = os.getloadavg()
    k = selected_per_side(args.policies)
    title = (f"Datapath: client (h0) -> server (h1), routed, phases A (no policy) and B "
             f"({args.policies} policies, {k} egress on the client and {k} ingress on the server "
             f"selecting the flow) in alternating pairs x{args.reps}; iperf3 {args.seconds:g}s, "
             f"{args.pings} pings at 10 ms; counters over {args.count} datagrams")  # fmt: skip
    table = format_result(result)
    print(title)
    print(table)
    if args.write_doc:
        when, machine = run_stamp()
        loads = [" / ".join(f"{x:.1f}" for x in load) for load in (load_before, load_after)]
        command = shlex.join(["bench/datapath.py", *(sys.argv[1:] if argv is None else argv)])
        text = "\n".join([
            f"## P7 datapath: {args.policies} policies against none (`bench/datapath.py`)", "",
            f"{when} on {machine}, {os.cpu_count()} CPUs; load average (1/5/15 min) {loads[0]} "
            f"at the start, {loads[1]} at the end, from other work sharing the machine (so "
            "absolute rates are noisy: the ratios come from back-to-back pairs). "
            f"`{command}`:", "",
            "```", title, table, "```",
        ])  # fmt: skip
        write_section(DOC, SECTION, text, "# Benchmark figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
