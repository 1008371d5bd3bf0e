"""Benchmark: Felix at scale (calc graph + dataplane) against raw floors measured in the same run.

Run as root: ``.venv/bin/python bench/felix_scale.py [--endpoints 1000] [--remote 10000]
[--policies 1000] [--calc-endpoints 10000] [--reps 7] [--write]`` (about 4.5 minutes on 2
cores, two of them the 10k calc+render rows), or ``--smoke`` for a tiny run in seconds.
``--write`` records the table in docs/benchmarks.md.
Everything happens in namespaces created here (a Felix host and a floor host, each with the
same pre-created, oper-up veths ``cali0..``, their peers in two workload namespaces); they
are deleted afterwards and nothing touches the root namespace. Endpoints are dual-stack
(198.18.0.0/15, 2001:db8::/32) with a MAC, so Felix programs v4 + v6 routes, static ARP
entries, per-interface sysctls, chains in six tables and v4 + v6 IP sets.

Rows (median and p99 over --reps; ratio = median / floor median):
- cold: resources -> CalcGraph -> InternalDataplane (its real thread and interface monitor,
  iptables backend "auto", the nftables generation read as calico-felix does) on an empty
  kernel, until every endpoint is reported up after an apply. Floor: the final state Felix
  produced (iptables-save, ip6tables-save, ipset save, routes, neighbours, sysctls) written
  by iptables-restore + ip6tables-restore + ipset restore + ip -batch (v4, v6) + sysctl -w
  into the floor host, emptied before each rep.
- calc+render: the same pipeline at --calc-endpoints local endpoints with no kernel (a fake
  command runner records the restore inputs). Floor: render_full() of the same final chains
  plus joining the same ipset / ip -batch lines: the irreducible text generation (rule
  hashes included), so the ratio is what calculation and bookkeeping add on top of it.
- steady-state changes (a rule change in a policy over ~10% of local endpoints; a rule
  selector change moving ~1,000 IP set members; one endpoint added on a pre-created veth):
  update -> graph -> managers -> drivers' apply, driven in the calling thread in the loop's
  order (InternalDataplane._apply), no thread hop. Floor: the minimal raw commands for the
  same kernel delta (ipset deltas, iptables-restore --noflush of the changed chains, ip
  -batch, sysctl -w), derived from kernel snapshots taken before and after Felix's change
  and replayed on the floor host, which is checked to end in the same state.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from calico.calc.graph import CalcGraph
from calico.calc.messages import Message
from calico.dataplane.drivers.iptables_render import render_full
from calico.dataplane.drivers.links import global_sysctls, interface_sysctls
from calico.dataplane.kernel import nft_generation, open_netlink
from calico.dataplane.loop import DataplaneSettings, InternalDataplane
from calico.datastore.api import SyncStatus
from calico.felix.daemon import tune_gc
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.keys import key_of
from calico.programs import CommandResult, Runner
from calico.rules.config import RulesConfig
from calico.rules.model import Chain, Rule
from calico.testing.netns import Namespaces

HOST = "bench-host"
NAMESPACES = 10
ROLES = ("frontend", "backend", "db", "cache", "batch")
MOVE_MEMBERS = 1000  # members per bucket: the selector change moves about this many
ROW_FORMAT = "{:<40} {:>15} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8}"
Update = tuple[Any, Resource | None]


@dataclass(frozen=True)
class Scale:
    endpoints: int = 1000
    remote: int = 10000
    policies: int = 1000

    @property
    def apps(self) -> int:
        return max(2, self.policies // 2)

    @property
    def buckets(self) -> int:
        return max(2, (self.endpoints + self.remote) // MOVE_MEMBERS)

    def label(self) -> str:
        return f"{self.endpoints}/{self.remote}/{self.policies}"


@dataclass(frozen=True)
class Row:
    scenario: str
    scale: str
    felix: Samples
    floor: Samples


# -- workload ------------------------------------------------------------------------------


def v4(index: int, remote: bool = False) -> str:
    return f"198.{19 if remote else 18}.{index // 250}.{index % 250 + 1}"


def v6(index: int, remote: bool = False) -> str:
    return f"2001:db8:{2 if remote else 1}::{index:x}"


def mac(index: int) -> str:
    return f"0e:00:00:{index >> 16 & 0xFF:02x}:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


def iface(index: int) -> str:
    return f"cali{index}"


class Workload:
    """Deterministic Calico-shaped resources: namespaces (profiles), endpoints, policies.

    Endpoint i has app ``app<i % apps>``, namespace ``ns<(i // apps) % 10>``, one of five
    roles, a ``bucket`` (~1,000 endpoints each) and, for every tenth local one,
    ``wide=true``. Policy p selects ``app<p % apps>`` (half namespaced, half global) and has
    ten rules, most with selectors (so IP sets have realistic membership) or CIDRs.
    """

    def __init__(self, scale: Scale) -> None:
        self.scale = scale

    def labels(self, index: int, remote: bool) -> dict[str, str]:
        scale = self.scale
        gid = index + (scale.endpoints if remote else 0)
        labels = {
            "app": f"app{gid % scale.apps}",
            "role": ROLES[gid // 3 % len(ROLES)],
            "bucket": str(gid % scale.buckets),
        }
        if not remote and index % 10 == 0:
            labels["wide"] = "true"
        return labels

    def namespace(self, index: int, remote: bool) -> str:
        gid = index + (self.scale.endpoints if remote else 0)
        return f"ns{gid // self.scale.apps % NAMESPACES}"

    def endpoint_doc(self, index: int, remote: bool = False) -> dict[str, Any]:
        ns = self.namespace(index, remote)
        node = f"node-{index % 50}" if remote else HOST
        spec: dict[str, Any] = {
            "node": node, "orchestrator": "k8s", "pod": f"{'r' if remote else 'l'}{index}",
            "endpoint": "eth0", "interfaceName": iface(index),
            "ipNetworks": [f"{v4(index, remote)}/32", f"{v6(index, remote)}/128"],
            "profiles": [f"kns.{ns}"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        }  # fmt: skip
        if not remote:
            spec["mac"] = mac(index)
        meta = {"namespace": ns, "labels": self.labels(index, remote)}
        return {"kind": "WorkloadEndpoint", "metadata": meta, "spec": spec}

    def profile_doc(self, ns: str) -> dict[str, Any]:
        return {
            "kind": "Profile",
            "metadata": {"name": f"kns.{ns}"},
            "spec": {
                "labelsToApply": {"pcns.projectcalico.org/name": ns},
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
            },
        }

    def policy_doc(self, p: int) -> dict[str, Any]:
        apps = self.scale.apps
        app, peer, dst = (f"app{(p + d) % apps}" for d in (0, 1, 3))
        role = ROLES[p % len(ROLES)]
        net = f"198.18.{200 + p % 50}.0/24"
        ingress = [
            {"action": "Deny", "source": {"selector": "has(quarantine)"}},
            {"action": "Allow", "protocol": "TCP", "source": {"selector": f"app == '{peer}'"},
             "destination": {"ports": [8000 + p % 20, 443]}},
            {"action": "Allow", "protocol": "TCP", "source": {"selector": f"role == '{role}'"},
             "destination": {"ports": ["http"]}},
            {"action": "Allow", "protocol": "UDP", "source": {"nets": [net]},
             "destination": {"ports": [53]}},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
        ]  # fmt: skip
        egress = [
            {"action": "Allow", "protocol": "TCP", "destination": {"selector": f"app == '{dst}'",
             "ports": [5432]}},
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
            {"action": "Allow", "protocol": "TCP", "destination": {"nets": [net, "198.19.0.0/16"]}},
            {"action": "Deny", "destination": {"selector": "role == 'db'"}},
            {"action": "Pass"},
        ]  # fmt: skip
        spec = {"order": p % 100, "selector": f"app == '{app}'", "ingress": ingress,
                "egress": egress}  # fmt: skip
        if p % 2:
            meta = {"name": f"pol{p}", "namespace": f"ns{p % NAMESPACES}"}
            return {"kind": "NetworkPolicy", "metadata": meta, "spec": spec}
        return {"kind": "GlobalNetworkPolicy", "metadata": {"name": f"pol{p}"}, "spec": spec}

    def wide_doc(self, port: int) -> dict[str, Any]:
        """A policy over every tenth local endpoint; its rule change is one port."""
        rule = {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'frontend'"},
                "destination": {"ports": [port]}}  # fmt: skip
        spec = {"order": 5, "selector": "wide == 'true'", "ingress": [rule], "egress": []}
        return {"kind": "GlobalNetworkPolicy", "metadata": {"name": "bench-wide"}, "spec": spec}

    def move_doc(self, bucket: int) -> dict[str, Any]:
        """A policy whose rule selector names one bucket: changing it moves ~1,000 members."""
        rule = {"action": "Allow", "source": {"selector": f"bucket == '{bucket}'"}}
        spec = {"order": 6, "selector": "wide == 'true'", "ingress": [rule], "egress": []}
        return {"kind": "GlobalNetworkPolicy", "metadata": {"name": "bench-move"}, "spec": spec}

    def docs(self, remote: range | None = None) -> list[dict[str, Any]]:
        """Every resource; `remote` picks which remote endpoints (default: all of them), so
        a run can load part of them and add the rest later with the same labels."""
        scale = self.scale
        return [
            *(self.profile_doc(f"ns{n}") for n in range(NAMESPACES)),
            *(self.policy_doc(p) for p in range(scale.policies)),
            self.wide_doc(8000),
            self.move_doc(0),
            *(self.endpoint_doc(i) for i in range(scale.endpoints)),
            *(self.remote_docs(range(scale.remote) if remote is None else remote)),
        ]

    def remote_docs(self, indices: range) -> list[dict[str, Any]]:
        return [self.endpoint_doc(j, remote=True) for j in indices]

    def resources(self) -> list[Resource]:
        return [resource(doc) for doc in self.docs()]


def resource(doc: dict[str, Any]) -> Resource:
    return parse_resource({"apiVersion": "projectcalico.org/v3", **doc})


def updates(resources: Iterable[Resource]) -> list[Update]:
    return [(key_of(r), r) for r in resources]


# -- timing helpers ------------------------------------------------------------------------


class CountingRunner(Runner):
    """A Runner in `netns` that counts the commands it runs."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns=netns, timeout=300)
        self.calls = 0
        self.seconds = 0.0

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        started = time.perf_counter()
        try:
            return super().run(args, stdin=stdin, check=check)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started

    def take(self) -> tuple[int, float]:
        """Commands run and their total time since the last take()."""
        out = (self.calls, self.seconds)
        self.calls, self.seconds = 0, 0.0
        return out


@dataclass
class Samples:
    """Durations of one scenario's repetitions, and the commands each ran."""

    times: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    command_time: list[float] = field(default_factory=list)

    def add(self, seconds: float, runner: CountingRunner | None = None) -> None:
        self.times.append(seconds)
        if runner is not None:
            calls, spent = runner.take()
            self.calls.append(calls)
            self.command_time.append(spent)

    def drop_first(self) -> Samples:
        return Samples(self.times[1:], self.calls[1:], self.command_time[1:])


def timed(
    action: Callable[[], object],
    reset: Callable[[], object],
    reps: int,
    runner: CountingRunner | None = None,
) -> Samples:
    """Runs reset (untimed) then action, `reps` times; returns the action's samples."""
    samples = Samples()
    for _ in range(reps):
        reset()
        if runner is not None:
            runner.take()
        started = time.perf_counter()
        action()
        samples.add(time.perf_counter() - started, runner)
    return samples


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settings() -> DataplaneSettings:
    return DataplaneSettings(rules=RulesConfig())


def apply_dataplane(dp: InternalDataplane) -> None:
    """One dataplane apply in the loop's order (InternalDataplane._apply), errors raised."""
    dp.write_kernel()


def deliver(dp: InternalDataplane, batch: Sequence[Message]) -> None:
    """Hands a calc graph batch to the managers, as the loop's _handle does."""
    for msg in batch:
        for manager in dp.managers:
            manager.on_update(msg)


# -- calc + render only (no kernel) --------------------------------------------------------


class RecordingRunner:
    """A CommandRunner for a kernel that is empty and holds `ifaces` (all up): reads answer
    from that, writes are recorded (their stdin) and not executed."""

    def __init__(self, ifaces: Sequence[str]) -> None:
        links = [
            {"ifindex": n + 2, "ifname": name, "operstate": "UP"} for n, name in enumerate(ifaces)
        ]
        self._links = json.dumps(links)
        self.writes: list[tuple[list[str], str]] = []

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if args[0] == "ip" and "-j" in args:  # RouteTable's read: links, routes, neighbours
            script = stdin or ""
            dumps = [
                self._links if line.startswith("link") else "[]" for line in script.splitlines()
            ]
            return CommandResult(0, "\n".join(dumps) + "\n", "")
        if args[0].endswith("-save") or args[:2] in (["ipset", "list"], ["ipset", "save"]):
            return CommandResult(0, "", "")
        self.writes.append((list(args), stdin or ""))
        return CommandResult(0, "", "")


def _no_netlink() -> Any:
    raise OSError("no kernel in the calc+render benchmark")


@dataclass
class CalcResult:
    graph: float
    dataplane: float
    dp: InternalDataplane
    runner: RecordingRunner

    @property
    def total(self) -> float:
        return self.graph + self.dataplane


def calc_render(wl: Workload, resources: Sequence[Resource]) -> CalcResult:
    """Resources -> graph -> managers -> drivers' apply against a recording runner."""
    ifaces = [iface(i) for i in range(wl.scale.endpoints)]
    batches: list[Message] = []
    ups = updates(resources)
    started = time.perf_counter()
    graph = CalcGraph(HOST, batches.extend)
    graph.on_updates(ups)
    graph.on_status(SyncStatus.IN_SYNC)
    graph_done = time.perf_counter()
    runner = RecordingRunner(ifaces)
    dp = InternalDataplane(settings(), runner, _no_netlink)
    for n, name in enumerate(ifaces):
        dp.endpoints.on_iface_state(name, True, n + 2)
    deliver(dp, batches)
    apply_dataplane(dp)
    done = time.perf_counter()
    return CalcResult(graph_done - started, done - graph_done, dp, runner)


def render_floor(result: CalcResult) -> tuple[Callable[[], object], Callable[[], object]]:
    """The same final texts serialised straight from their content: render_full() of every
    table's final chains (read from the driver's desired state) and the ipset / ip -batch
    lines joined from their pre-split fields. Returns (reset, render): reset (untimed) copies
    the chains, so that render computes every rule's text and hash afresh."""
    chains = [(t.table, [d.chain for d in t._chains.values()]) for t in result.dp.tables]
    fields = [
        [line.split(" ") for line in stdin.splitlines()]
        for args, stdin in result.runner.writes
        if args[0] in ("ip", "ipset")
    ]
    fresh: list[tuple[str, list[Chain]]] = []

    def reset() -> None:
        fresh[:] = [(table, [_copy(c) for c in cs]) for table, cs in chains]

    def render() -> object:
        out = [render_full(table, cs) for table, cs in fresh]
        out += ["".join(" ".join(words) + "\n" for words in lines) for lines in fields]
        return "".join(out)

    return reset, render


def _copy(chain: Chain) -> Chain:
    """An equal chain that has computed nothing yet (no cached rule texts or hashes)."""
    return Chain(chain.name, tuple(Rule(r.match, r.action, r.comment) for r in chain.rules))


# -- kernel state: snapshots, full restores, deltas ------------------------------------------

Command = tuple[list[str], str | None]
TABLES = ("raw", "mangle", "nat", "filter")


@dataclass
class KernelState:
    """What Felix owns in a namespace, as the raw tools print it."""

    chains: dict[tuple[int, str], dict[str, list[str]]] = field(default_factory=dict)
    saves: dict[int, str] = field(default_factory=dict)  # full iptables-save per family
    sets: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # name: create, members
    ipset_save: str = ""
    routes: dict[int, set[tuple[str, str]]] = field(default_factory=dict)  # (dst, dev)
    neighs: set[tuple[str, str, str]] = field(default_factory=set)  # (dst, dev, lladdr)
    sysctls: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        chains = sum(len(c) for c in self.chains.values())
        rules = sum(len(r) for c in self.chains.values() for r in c.values())
        members = sum(len(m) for _, m in self.sets.values())
        routes = sum(len(r) for r in self.routes.values())
        return (
            f"{chains} chains / {rules} rules, {len(self.sets)} IP sets / {members} members, "
            f"{routes} routes, {len(self.neighs)} ARP entries, {len(self.sysctls)} sysctls"
        )


def parse_iptables_save(text: str) -> dict[str, dict[str, list[str]]]:
    """table -> chain -> rule lines (counters dropped)."""
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif line.startswith(":"):
            current.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A "):
            current.setdefault(line.split(" ", 2)[1], []).append(line)
    return tables


def sysctl_names(ifaces: Iterable[str], ipv6: bool = True) -> list[str]:
    names = list(global_sysctls(ipv6))
    for name in ifaces:
        names += interface_sysctls(name, False, ipv6)
    return names


def snapshot(runner: Runner, sysctls: Sequence[str], families: Sequence[int]) -> KernelState:
    """Reads everything Felix owns (the reads run concurrently)."""
    reads: dict[str, list[str]] = {"ipset": ["ipset", "save"]}
    for family in families:
        reads[f"save{family}"] = ["ip6tables-save" if family == 6 else "iptables-save"]
        reads[f"route{family}"] = ["ip", "-j", f"-{family}", "route", "show", "proto", "80"]
    reads["neigh"] = ["ip", "-j", "-4", "neigh", "show", "nud", "permanent"]
    if sysctls:
        reads["sysctl"] = ["sysctl", *sysctls]
    with ThreadPoolExecutor(len(reads)) as pool:
        texts = pool.map(lambda args: runner.run(args).stdout, reads.values())
        out = dict(zip(reads, texts, strict=True))
    state = KernelState(ipset_save=out["ipset"])
    for family in families:
        state.saves[family] = out[f"save{family}"]
        for table, chains in parse_iptables_save(state.saves[family]).items():
            state.chains[(family, table)] = chains
        routes = json.loads(out[f"route{family}"] or "[]")
        state.routes[family] = {(r["dst"], r["dev"]) for r in routes}
    for line in state.ipset_save.splitlines():
        words = line.split(" ")
        if words[0] == "create":
            state.sets[words[1]] = (line, set())
        elif words[0] == "add":
            state.sets[words[1]][1].add(words[2])
    state.neighs = {(n["dst"], n["dev"], n["lladdr"]) for n in json.loads(out["neigh"] or "[]")}
    for line in out.get("sysctl", "").splitlines():
        name, _, value = line.partition(" = ")
        state.sysctls[name] = value
    return state


def route_lines(family: int, routes: Iterable[tuple[str, str]], verb: str) -> list[str]:
    scope = " scope link" if family == 4 else ""
    return [f"route {verb} {dst} dev {dev}{scope} proto 80" for dst, dev in sorted(routes)]


def neigh_lines(neighs: Iterable[tuple[str, str, str]], verb: str) -> list[str]:
    if verb == "del":
        return [f"neigh del {dst} dev {dev}" for dst, dev, _ in sorted(neighs)]
    return [f"neigh replace {d} lladdr {m} dev {dev} nud permanent" for d, dev, m in sorted(neighs)]


def full_restore(state: KernelState) -> list[Command]:
    """The whole state, written into an empty namespace by one process per tool."""
    cmds: list[Command] = [(["ipset", "restore"], state.ipset_save)]
    for family, text in state.saves.items():
        cmds.append(([f"ip{'6' if family == 6 else ''}tables-restore"], text))
    cmds += _route_commands(state.routes, {}, state.neighs, set())
    if state.sysctls:
        cmds.append((["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in state.sysctls.items())], None))
    return cmds


def delta(before: KernelState, after: KernelState) -> list[Command]:
    """The minimal raw commands turning `before` into `after`: ipset creates and member
    deltas, one iptables-restore --noflush per family of the changed chains, ipset
    destroys, ip -batch of route and ARP changes, sysctl -w of changed values."""
    cmds: list[Command] = []
    adds: list[str] = []
    for name, (create, members) in sorted(after.sets.items()):
        old = before.sets.get(name)
        if old is None:
            adds.append(create)
        have = old[1] if old else set()
        adds += [f"del {name} {m}" for m in sorted(have - members)]
        adds += [f"add {name} {m}" for m in sorted(members - have)]
    if adds:
        cmds.append((["ipset", "restore"], "\n".join(adds) + "\n"))
    for family in sorted({f for f, _ in after.chains}):
        text = _chains_delta(before, after, family)
        if text:
            tool = f"ip{'6' if family == 6 else ''}tables-restore"
            cmds.append(([tool, "--noflush"], text))
    gone = sorted(before.sets.keys() - after.sets.keys())
    if gone:
        cmds.append((["ipset", "restore"], "".join(f"destroy {n}\n" for n in gone)))
    cmds += _route_commands(after.routes, before.routes, after.neighs, before.neighs)
    changed = {k: v for k, v in after.sysctls.items() if before.sysctls.get(k) != v}
    if changed:
        cmds.append((["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in changed.items())], None))
    return cmds


def _chains_delta(before: KernelState, after: KernelState, family: int) -> str:
    lines: list[str] = []
    for table in TABLES:
        old = before.chains.get((family, table), {})
        new = after.chains.get((family, table), {})
        write = [c for c in sorted(new) if old.get(c) != new[c]]
        stale = sorted(old.keys() - new.keys())
        if not write and not stale:
            continue
        if any(not c.startswith("cali-") for c in write):
            raise RuntimeError(f"a kernel chain changed in {table}: not a benchmarked delta")
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in write]
        lines += [f"-F {c}" for c in stale]
        lines += [rule for c in write for rule in new[c]]
        lines += [f"-X {c}" for c in stale]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n" if lines else ""


def _route_commands(
    routes: dict[int, set[tuple[str, str]]],
    old_routes: dict[int, set[tuple[str, str]]],
    neighs: set[tuple[str, str, str]],
    old_neighs: set[tuple[str, str, str]],
) -> list[Command]:
    cmds: list[Command] = []
    for family in sorted(routes.keys() | old_routes.keys()):
        new, old = routes.get(family, set()), old_routes.get(family, set())
        lines = route_lines(family, old - new, "del") + route_lines(family, new - old, "replace")
        if family == 4:
            lines += neigh_lines(old_neighs - neighs, "del")
            lines += neigh_lines(neighs - old_neighs, "replace")
        if lines:
            cmds.append((["ip", f"-{family}", "-batch", "-"], "\n".join(lines) + "\n"))
    return cmds


def run_commands(runner: Runner, cmds: Sequence[Command]) -> None:
    for args, stdin in cmds:
        runner.run(args, stdin=stdin)


def differences(a: KernelState, b: KernelState) -> list[str]:
    """What differs between two hosts' states (counters, set internals and order aside)."""
    out = []
    if a.chains != b.chains:
        out.append("chains")
    if {n: m for n, (_, m) in a.sets.items()} != {n: m for n, (_, m) in b.sets.items()}:
        out.append("ipsets")
    if a.routes != b.routes:
        out.append("routes")
    if a.neighs != b.neighs:
        out.append("neighbours")
    if a.sysctls != b.sysctls:
        out.append("sysctls")
    return out


# -- hosts -----------------------------------------------------------------------------------


class Host:
    """A host namespace holding veths cali0..cali<count-1>, oper-up (peers in `peers`)."""

    def __init__(
        self, ns: Namespaces, tag: str, count: int, peers: Sequence[str], peer_prefix: str
    ) -> None:
        self.name = ns.add(tag)
        self.runner = CountingRunner(self.name)
        self.factory = functools.partial(open_netlink, self.name)
        self.count = count
        host_lines = []
        peer_lines: dict[str, list[str]] = {p: [] for p in peers}
        for i in range(count):
            wl = peers[i % len(peers)]
            peer = f"{peer_prefix}{i}"
            host_lines.append(
                f"link add {iface(i)} type veth peer name {peer} address {mac(i)} netns {wl}\n"
                f"link set {iface(i)} up\n"
            )
            peer_lines[wl].append(f"link set {peer} up\n")
        self.runner.run(["ip", "-batch", "-"], stdin="".join(host_lines))
        for wl, lines in peer_lines.items():
            ns.exec(wl, ["ip", "-batch", "-"], stdin="".join(lines), timeout=300)

    def links(self) -> dict[str, tuple[bool, int]]:
        out = self.runner.run(["ip", "-j", "link", "show"]).stdout
        return {
            link["ifname"]: (link.get("operstate") == "UP", link["ifindex"])
            for link in json.loads(out)
        }

    def reset(self) -> None:
        """Back to a fresh namespace's firewall, sets and routes (our namespace only)."""
        self.runner.run(["nft", "flush", "ruleset"])
        self.runner.run(["ipset", "destroy"])
        for family in (4, 6):
            self.runner.run(["ip", f"-{family}", "route", "flush", "proto", "80"])
        self.runner.run(["ip", "-4", "neigh", "flush", "nud", "permanent"])


# -- Felix on a real kernel ------------------------------------------------------------------


def felix_cold(
    host: Host, ups: Sequence[Update], local: int, timeout: float = 600
) -> tuple[float, float]:
    """InternalDataplane with its thread and interface monitor, fed by a CalcGraph, until all
    `local` endpoints are reported up and an apply has completed after that. Returns that
    time and the part of it the calc graph took (in this thread, while the dataplane works)."""
    done = threading.Event()
    up: set[object] = set()

    def on_status(ep_id: object, _endpoint: object, status: str | None) -> None:
        if status == "up":
            up.add(ep_id)
        else:
            up.discard(ep_id)

    def on_health(ready: bool) -> None:
        if ready and len(up) >= local:
            done.set()

    started = time.perf_counter()
    dp = InternalDataplane(
        settings(),
        host.runner,
        host.factory,
        on_endpoint_status=on_status,
        on_health=on_health,
        nft_generation=nft_generation(host.name),  # as calico-felix builds it
    )
    dp.start()
    try:
        graph_started = time.perf_counter()
        graph = CalcGraph(HOST, dp.send)
        graph.on_updates(ups)
        graph.on_status(SyncStatus.IN_SYNC)
        graph_time = time.perf_counter() - graph_started
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if not dp.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"dataplane not in sync ({len(up)}/{local} up): {dp.failure}")
        return time.perf_counter() - started, graph_time
    finally:
        dp.stop()


class DrivenFelix:
    """CalcGraph + InternalDataplane driven in the calling thread (no queue, no thread)."""

    def __init__(self, host: Host, ups: Sequence[Update]) -> None:
        self.dp = InternalDataplane(settings(), host.runner, host.factory)
        self.pending: list[Message] = []
        self.graph = CalcGraph(HOST, self.pending.extend)
        for name, (is_up, index) in host.links().items():  # what the monitor's dump reports
            self.dp.endpoints.on_iface_state(name, is_up, index)
        self.graph.on_updates(ups)
        self.graph.on_status(SyncStatus.IN_SYNC)
        self.sync()

    def update(self, resource: Resource) -> None:
        self.graph.on_updates([(key_of(resource), resource)])
        self.sync()

    def sync(self) -> None:
        batch, self.pending[:] = list(self.pending), []
        deliver(self.dp, batch)
        apply_dataplane(self.dp)

    def close(self) -> None:
        for routes in self.dp.routes.values():
            routes.close()


class KernelBench:
    """The Felix host and the floor host, with the same veths (endpoints plus spares)."""

    def __init__(self, ns: Namespaces, wl: Workload, spares: int) -> None:
        self.wl = wl
        peers = [ns.add(f"wl{n}") for n in range(2)]
        local = wl.scale.endpoints
        self.felix = Host(ns, "felix", local + spares, peers, "f")
        self.floor = Host(ns, "floor", local + spares, peers, "r")
        self.spares = range(local, local + spares)
        self.spare = iter(self.spares)
        self.notes: list[str] = []

    def snapshot(self, host: Host, ifaces: Iterable[int]) -> KernelState:
        return snapshot(host.runner, sysctl_names(map(iface, ifaces)), (4, 6))

    def cold(self, ups: Sequence[Update], reps: int) -> tuple[Row, KernelState]:
        local = self.wl.scale.endpoints
        felix, graph = Samples(), []
        for _ in range(reps):
            self.felix.reset()
            self.felix.runner.take()
            elapsed, graph_time = felix_cold(self.felix, ups, local)
            felix.add(elapsed, self.felix.runner)
            graph.append(graph_time)
        state = self.snapshot(self.felix, range(local))
        cmds = full_restore(state)
        floor = timed(
            lambda: run_commands(self.floor.runner, cmds), self.floor.reset, reps, self.floor.runner
        )
        check(state, self.snapshot(self.floor, range(local)), "cold")
        self.notes.append(
            f"cold: the calc graph took {statistics.median(graph):.2f} s of it (median); "
            f"Felix's final state: {state.summary()}"
        )
        return Row("cold: resources -> kernel in sync", self.label(), felix, floor), state

    def changes(self, ups: Sequence[Update], reps: int) -> list[Row]:
        """Steady state: rule change, selector change, endpoint add; each replayed raw."""
        felix = DrivenFelix(self.felix, ups)
        try:
            before = self.snapshot(self.felix, self.spares)
            run_commands(self.floor.runner, delta(self.snapshot(self.floor, self.spares), before))
            scale = self.wl.scale
            moved = (scale.endpoints + scale.remote) // scale.buckets
            scenarios: list[tuple[str, Callable[[int], Resource]]] = [
                ("policy rule change (10% of endpoints)", self.wide),
                (f"rule selector change ({moved} members)", self.move),
                ("endpoint add (routes, chains, dispatch)", self.add_endpoint),
            ]
            rows = []
            for scenario, change in scenarios:
                times, deltas = Samples(), []
                for n in range(reps + 1):  # the first is a warm-up (netlink socket, caches)
                    res = change(n)
                    self.felix.runner.take()
                    started = time.perf_counter()
                    felix.update(res)
                    times.add(time.perf_counter() - started, self.felix.runner)
                    after = self.snapshot(self.felix, self.spares)
                    deltas.append(delta(before, after))
                    before = after
                floor = Samples()
                for cmds in deltas:
                    self.floor.runner.take()
                    started = time.perf_counter()
                    run_commands(self.floor.runner, cmds)
                    floor.add(time.perf_counter() - started, self.floor.runner)
                rows.append(Row(scenario, self.label(), times.drop_first(), floor.drop_first()))
            check(before, self.snapshot(self.floor, self.spares), "steady-state changes")
            return rows
        finally:
            felix.close()

    def wide(self, n: int) -> Resource:
        return resource(self.wl.wide_doc(8001 + n % 2))

    def move(self, n: int) -> Resource:
        return resource(self.wl.move_doc((n + 1) % 2))

    def add_endpoint(self, _n: int) -> Resource:
        return resource(self.wl.endpoint_doc(next(self.spare)))

    def label(self) -> str:
        return self.wl.scale.label()


def check(felix: KernelState, floor: KernelState, what: str) -> None:
    diff = differences(felix, floor)
    if diff:
        raise RuntimeError(f"{what}: the floor host differs from Felix's in {', '.join(diff)}")


def median_ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1e3:.0f} ms"


# -- driver ----------------------------------------------------------------------------------


def run_kernel(ns: Namespaces, scale: Scale, reps: int) -> tuple[list[Row], list[str]]:
    wl = Workload(scale)
    progress(f"kernel rows at {scale.label()}: pre-creating veths")
    bench = KernelBench(ns, wl, spares=reps + 1)
    started = time.perf_counter()
    ups = updates(wl.resources())
    parse = time.perf_counter() - started
    progress(f"cold start x{reps} (parsing the resources took {parse:.1f} s, not counted)")
    cold, _ = bench.cold(ups, reps)
    progress(f"steady-state changes x{reps}")
    return [cold, *bench.changes(ups, reps)], bench.notes


def run_calc(scale: Scale, reps: int) -> list[Row]:
    wl = Workload(scale)
    resources = wl.resources()
    progress(f"calc+render x{reps} at {scale.label()}")
    graph, render, total = Samples(), Samples(), Samples()
    result = None
    for _ in range(reps):
        result = None  # let the previous run's texts go first
        result = calc_render(wl, resources)
        graph.add(result.graph)
        render.add(result.dataplane)
        total.add(result.total)
    assert result is not None
    reset, render_text = render_floor(result)
    floor = timed(render_text, reset, reps)
    return [
        Row("calc: resources -> messages", scale.label(), graph, floor),
        Row("render: messages -> restore texts", scale.label(), render, floor),
        Row("calc+render total (no kernel)", scale.label(), total, floor),
    ]


def format_rows(rows: Sequence[Row], reps: int, notes: Sequence[str] = ()) -> str:
    cells = ["scenario", "scale", "median ms", "p99 ms", "floor ms", "ratio", "cmds", "cmd ms"]
    lines = [
        f"Felix at scale vs raw floors ({reps} reps; scale = local/remote/policies;"
        " cmds = commands per rep, Felix/floor; cmd ms = Felix's time inside them)",
        ROW_FORMAT.format(*cells),
    ]
    for row in rows:
        median, floor = statistics.median(row.felix.times), statistics.median(row.floor.times)
        times = (f"{t * 1e3:.1f}" for t in (median, p99(row.felix.times), floor))
        ratio = f"{median / floor:.2f}" if floor > 0 else "-"
        cmds = in_cmds = "-"
        if row.felix.calls and row.floor.calls:
            cmds = "/".join(f"{statistics.median(s.calls):.0f}" for s in (row.felix, row.floor))
            in_cmds = f"{statistics.median(row.felix.command_time) * 1e3:.1f}"
        lines.append(ROW_FORMAT.format(row.scenario, row.scale, *times, ratio, cmds, in_cmds))
    lines += notes
    return "\n".join(lines)


NOTES = (
    "floors: cold = ipset restore + iptables-restore + ip6tables-restore + ip -batch (v4, v6)"
    " + sysctl -w of Felix's final state into an emptied namespace;",
    "  changes = the minimal raw commands for the same kernel delta (ipset deltas, one restore"
    " --noflush of the changed chains per family, ip -batch, sysctl -w);",
    "  calc/render = render_full() of the same final chains + the same ipset/route lines (text"
    " generation only, rule hashes included): the ratio is what calculation adds.",
)


def run(ns: Namespaces, scale: Scale, calc_endpoints: int, reps: int) -> str:
    """Every row, in namespaces created in `ns`; returns the table."""
    rows, notes = run_kernel(ns, scale, reps)
    calc_scale = Scale(calc_endpoints, scale.remote, scale.policies)
    rows += run_calc(calc_scale, reps)
    return format_rows(rows, reps, [*notes, *NOTES])


def main(argv: Sequence[str] | None = None, ns: Namespaces | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000, help="local endpoints (veths)")
    parser.add_argument("--remote", type=int, default=10000, help="remote endpoints")
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--calc-endpoints", type=int, default=10000, help="calc+render row")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny scale, a few seconds")
    parser.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.endpoints, args.remote, args.policies, args.calc_endpoints = 6, 30, 6, 20
        args.reps = 3
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_gc()  # the process-wide setting calico-felix's main() makes
    scale = Scale(args.endpoints, args.remote, args.policies)
    load_start = os.getloadavg()[0]
    if ns is not None:
        table = run(ns, scale, args.calc_endpoints, args.reps)
    else:
        with Namespaces() as own:
            table = run(own, scale, args.calc_endpoints, args.reps)
    print(table)
    if args.write and not args.smoke:
        from felix_harness import record  # it imports this module: not at the top

        heading = "P1-P3 Felix cold start and changes at scale L against raw floors"
        used = argv if argv is not None else sys.argv[1:]
        record("felix-scale", heading, "felix_scale.py", used, table,
               (load_start, os.getloadavg()[0]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
