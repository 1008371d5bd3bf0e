"""Fault suite: agents killed and etcd down, each with its figure, against a running lab.

Run with ``.venv/bin/python bench/faults.py [--etcd-down 60] [--starts 5] [--no-border]
[--no-write]`` as root. It builds
a two-host mesh lab with a border router (`calico.lab`, the lab of LAB below) and, while
probing continuously from the `client` workload on host-1, injects one fault at a time:

- BIRD on host-1 SIGKILLed (`calico node run` restarts it): pings lost to `server` on
  host-2 (20 a second), seconds until host-1's BGP sessions are Established again;
- the border's bgpd SIGKILLed and started again: pings lost from the external machine to
  `server`, seconds until the border's sessions are Established again;
- Felix on host-2 SIGKILLed mid-apply, restarted by the node's supervisor, `--felix-kills`
  times: each time the policy denying client -> `secret` is rewritten (big: 20k CIDRs in
  80 IP sets and 900 more rules, all Deny; then plain again) and Felix is killed the moment
  it runs an `ipset restore` or iptables-restore child (seen in /proc): that child outliving
  Felix, or the kernel holding part of the change, proves the kill landed mid-apply.
  Figures: pings lost, bytes of an established TCP stream not echoed back (and whether it
  survived), seconds until Felix is in sync again (the longest; the node's restart backoff
  doubles from 0.5 s when Felix dies again within a minute), connections of the denied flow
  that got through while Felix was down, half-done or starting (tried every 20 ms, 100 ms
  each), a new allowed connection after, how many kills landed mid-apply, how much of each
  change the kernel held after the kill and whether it held anything neither before nor
  after the change, and whether the kernel after the restarts (our chains, rules and IP
  sets) is exactly what a Felix starting on a kernel without them writes;
- etcd SIGKILLed for `--etcd-down` seconds, then started again: the allowed stream and
  the denied flow throughout, and the latency of a policy change made after it returns
  against the same change made before it went down (the floor, same run).

Then, without probing: host-1's calico node started from nothing (BIRD's routes flushed)
while the border's bgpd is down, seconds until host-1 routes to `server` again (BIRD in
graceful restart recovery would wait 240 s for the absent peer). `--starts` fresh labs are
timed first (how long a lab takes to come up: every BIRD starts fresh).

Every window watches the same things, so every row reports each count. The table is
printed and written into docs/reliability.md between the `faults` markers (with date and
machine) unless --no-write. `tests/e2e/test_faults.py` runs the same suite in short form.

The script also runs inside workload namespaces (`serve`, `watch`, `first`): a TCP stream
echo server, the client side of the stream plus the denied-flow knocker, and a connect loop
that reports when a flow first connects.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.dataplane.drivers.ipsets import IPSets, IPSetWriter, parse_ipset_save
from calico.dataplane.drivers.iptables_table import IptablesTable, apply_tables, detect_backend
from calico.dataplane.loop import TABLES
from calico.lab import frr, procs
from calico.lab.base import wait_for
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab
from calico.model import parse_manifest
from calico.model.policy import GlobalNetworkPolicy
from calico.rules import naming
from calico.testing.doc_sections import run_stamp, write_section

STREAM_PORT = 7000
MESSAGE = 64  # bytes per stream message, one every STREAM_EVERY seconds
STREAM_EVERY = 0.01
KNOCK_EVERY = 0.02
DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
LAB = """
name: faults
asNumber: 64512
fabric: {ipv4: 198.18.0.0/24}
pools: [{name: faults-ipv4, cidr: 198.19.0.0/20, blockSize: 26}]
hosts:
  - {name: host-1, ipv4: 198.18.0.11}
  - {name: host-2, ipv4: 198.18.0.12}
workloads:
  - {name: client, host: host-1, namespace: faults, labels: {app: client}, ports: [80]}
  - {name: server, host: host-2, namespace: faults, labels: {app: server}, ports: [80]}
  - {name: secret, host: host-2, namespace: faults, labels: {app: secret}, ports: [80]}
  - {name: later, host: host-2, namespace: faults, labels: {app: later}, ports: [80]}
border:
  name: border
  asNumber: 65000
  ipv4: 198.18.0.1
  network: {ipv4: 198.18.200.0/24}
externals:
  - {name: outside, behind: border, ipv4: 198.18.200.10}
"""
DENY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: faults-%(name)s}
spec:
  selector: app == '%(name)s'
  types: [Ingress]
  ingress: %(rules)s
"""
ALLOW_CLIENT = "[{action: Allow, source: {selector: app == 'client'}}]"


@dataclass(frozen=True, slots=True)
class Window:
    """What the probes saw while a fault was on."""

    pings: int
    pings_lost: int
    stream_sent: int  # bytes
    stream_lost: int  # bytes sent but never echoed back
    stream_error: str  # "" while the connection survived
    stream_stall: float  # longest gap between echoes, seconds
    knocks: int  # connection attempts of the denied flow
    knocks_through: int  # ... that connected


@dataclass(frozen=True, slots=True)
class Row:
    fault: str
    window: Window
    back: float  # seconds until the agent is back (sessions, Felix in sync, etcd healthy)
    back_what: str
    latency: tuple[float, float] | None = None  # etcd: a change after it returns, the floor
    ok_after: bool = True  # a new allowed connection works afterwards
    # Felix: kills that landed mid-apply, kills, the kernel write each interrupted
    mid_apply: tuple[int, int, str] | None = None
    # Felix: the kernel after its restarts is what a clean Felix writes; lines, lines differing
    repaired: tuple[bool, int, int] | None = None
    stray: int = 0  # Felix: lines of a half-applied kernel neither before nor after the change

    @property
    def met(self) -> bool:
        """Every goal: no ping or stream byte lost, the stream survived, nothing denied got
        through, new connections work; after etcd returns, a change within 1 s of the floor;
        every Felix kill mid-apply, nothing neither old nor new in the half-applied kernel,
        and the kernel repaired after."""
        w = self.window
        late = self.latency is not None and self.latency[0] > self.latency[1] + 1.0
        lost = w.pings_lost or w.stream_lost or w.stream_error or w.knocks_through
        missed = self.mid_apply is not None and self.mid_apply[0] < self.mid_apply[1]
        broken = (self.repaired is not None and not self.repaired[0]) or self.stray
        return not lost and self.ok_after and not late and not missed and not broken


# -- inside workload namespaces ----------------------------------------------------------------


def serve(port: int) -> None:
    """Echo every byte back, one thread per connection."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def watch(stream: str, denied: str) -> None:
    """Stream to `stream` and knock at `denied` (host:port) until stdin closes; print JSON."""
    stop = threading.Event()
    result: dict[str, object] = {}
    threads = [
        threading.Thread(target=_stream, args=(_addr(stream), stop, result)),
        threading.Thread(target=_knock, args=(_addr(denied), stop, result)),
    ]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join()
    print(json.dumps(result), flush=True)


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _stream(addr: tuple[str, int], stop: threading.Event, out: dict[str, object]) -> None:
    sent = echoed = 0
    stall, last, error = 0.0, time.monotonic(), ""
    try:
        sock = socket.create_connection(addr, timeout=5.0)
        tick = time.monotonic()
        while not stop.is_set():
            if time.monotonic() >= tick:  # paced: one message per STREAM_EVERY
                sock.sendall(b"x" * MESSAGE)
                sent, tick = sent + MESSAGE, tick + STREAM_EVERY
            sock.settimeout(max(0.001, tick - time.monotonic()))
            echoed, last, stall = _drain(sock, echoed, last, stall)
        sock.settimeout(0.05)
        deadline = time.monotonic() + 10.0  # what is still in flight comes back
        while echoed < sent and time.monotonic() < deadline:
            echoed, last, stall = _drain(sock, echoed, last, stall)
        sock.close()
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    out.update(sent=sent, echoed=echoed, stall=stall, error=error)


def _drain(sock: socket.socket, echoed: int, last: float, stall: float) -> tuple[int, float, float]:
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return echoed, last, max(stall, time.monotonic() - last)
    if not data:
        raise ConnectionResetError("the server closed the stream")
    now = time.monotonic()
    return echoed + len(data), now, max(stall, now - last)


def _connects(addr: tuple[str, int], timeout: float) -> bool:
    try:
        socket.create_connection(addr, timeout=timeout).close()
        return True
    except OSError:
        return False


def _knock(addr: tuple[str, int], stop: threading.Event, out: dict[str, object]) -> None:
    knocks = through = 0
    while not stop.wait(KNOCK_EVERY):
        knocks += 1
        through += _connects(addr, 0.1)
    out.update(knocks=knocks, through=through)


def first(target: str, deadline: float) -> None:
    """Print the wall-clock time `target` first accepts a connection (after "ready")."""
    addr = _addr(target)
    print("ready", flush=True)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if _connects(addr, 0.05):
            print(f"{time.time():.4f}", flush=True)
            return
        time.sleep(0.005)
    print("never", flush=True)


# -- the lab side --------------------------------------------------------------------------------


def _in(lab: Lab, where: str, *args: str) -> programs.Popen[str]:
    """This script in `where`'s namespace; returns once it said "ready"."""
    argv = ["ip", "netns", "exec", lab.netns_of(where), sys.executable, __file__, *args]
    proc = programs.start(argv, stdin=programs.PIPE, stdout=programs.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{args[0]} in {where} did not start")
    return proc


def _ping(lab: Lab, src: str, dst: str) -> programs.Popen[str]:
    address = lab.addresses(dst)[0]
    assert address is not None
    argv = ["ip", "netns", "exec", lab.netns_of(src), "ping", "-n", "-q", "-i", "0.05", address]
    return programs.start(argv, stdout=programs.PIPE, stderr=programs.STDOUT, text=True)


PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


@contextmanager
def probing(lab: Lab, ping_from: str = "client") -> Iterator[list[Window]]:
    """Ping `server`, stream to it and knock at `secret` from `client` while the block runs;
    the list yielded holds the Window afterwards."""
    out: list[Window] = []
    server, secret = lab.addresses("server")[0], lab.addresses("secret")[0]
    watcher = _in(lab, "client", "watch", f"{server}:{STREAM_PORT}", f"{secret}:80")
    pinger = _ping(lab, ping_from, "server")
    try:
        time.sleep(1.0)
        yield out
        time.sleep(1.0)
    finally:
        pinger.send_signal(signal.SIGINT)
        ping_out, _ = pinger.communicate(timeout=10)
        seen, _ = watcher.communicate("", timeout=30)
    pings = PING_SUMMARY.search(ping_out)
    sent, got = (int(pings.group(1)), int(pings.group(2))) if pings else (0, 0)
    w = json.loads(seen)
    lost = int(w["sent"]) - int(w["echoed"])
    stream = (w["sent"], lost, w["error"], w["stall"])
    out.append(Window(sent, sent - got, *stream, w["knocks"], w["through"]))


def apply(lab: Lab, manifest: str) -> None:
    for resource in parse_manifest(manifest):
        lab.client.apply(resource)


def deny(name: str, rules: str = "[]") -> str:
    return DENY % {"name": name, "rules": rules}


def _since(started: float, check: Callable[[], bool], timeout: float, what: str) -> float:
    if wait_for(lambda: True if check() else None, timeout, 0.02) is None:
        raise RuntimeError(f"{what} not within {timeout:.0f}s")
    return time.monotonic() - started


def sessions_up(lab: Lab, host: str) -> bool:
    sessions = lab.sessions(host)
    return bool(sessions) and all(s.established for s in sessions)


def bird_killed(lab: Lab) -> Row:
    with probing(lab) as window:
        lab.kill_bird("host-1")
        started = time.monotonic()
        time.sleep(0.3)  # the node notices and restarts BIRD; then its sessions come back
        back = _since(started, lambda: sessions_up(lab, "host-1"), 60, "BIRD sessions")
        time.sleep(2.0)
    return Row(
        "BIRD SIGKILLed on host-1 (calico node restarts it)",
        window[0],
        back,
        "sessions Established",
    )


def border_killed(lab: Lab) -> Row:
    border = lab.spec.border
    assert border is not None
    with probing(lab, ping_from="outside") as window:
        _kill_bgpd(lab)
        started = time.monotonic()
        _start_bgpd(lab)
        back = _since(started, lambda: _border_up(lab), 90, "FRR sessions")
        time.sleep(2.0)
    return Row(
        "FRR bgpd SIGKILLed on the border, started again", window[0], back, "sessions Established"
    )


def _kill_bgpd(lab: Lab) -> None:
    assert lab.spec.border is not None
    bgpd = lab.state.proc(f"frr/bgpd/{lab.spec.border.name}")
    assert bgpd is not None
    procs.kill([bgpd])


def _start_bgpd(lab: Lab) -> None:
    border = lab.spec.border
    assert border is not None
    lab.record_proc(
        f"frr/bgpd/{border.name}", frr.start_bgpd(lab.border_dir, lab.netns(border.name))
    )


def fresh_start_peer_absent(lab: Lab, timeout: float = 300.0) -> float:
    """Seconds until a calico node started from nothing on host-1 (its BIRD's routes flushed)
    routes to `server` on host-2, while its border peer is down. Graceful restart recovery
    (-R) would hold every route back for BIRD's `graceful restart wait` (240 s) here."""
    lab.stop_node("host-1")
    for version in ("-4", "-6"):
        lab.exec("host-1", ["ip", version, "route", "flush", "proto", "bird"])
    _kill_bgpd(lab)
    started = time.monotonic()
    lab.start_node("host-1")
    server = lab.state.workloads["server"]
    routed = lambda: lab.route_problem(server, ["host-1"]) is None  # noqa: E731
    seconds = _since(started, routed, timeout, "host-1's route to server")
    _start_bgpd(lab)
    lab.wait_nodes_ready(["host-1"])
    _since(time.monotonic(), lambda: _border_up(lab), 60, "border sessions")
    lab.wait_bgp(["host-1", "host-2"])
    return seconds


def _border_up(lab: Lab) -> bool:
    try:
        sessions = lab.border_sessions()
    except programs.CommandFailed:  # bgpd not answering yet
        return False
    return bool(sessions) and all(v == "Established" for v in sessions.values())


# The big spelling of the deny: 80 rules of 256 CIDRs (a rule's most), each an IP set, 20480
# members in all, and 900 rules of one port (a policy may have 1024 rules)
BIG_NET_RULES, NETS_PER_RULE, BIG_PORTS = 80, 256, 900


def secret_policy(big: bool) -> str:
    """The policy denying client -> `secret`: deny all, or the same verdict spelt big (20k
    CIDRs in 80 IP sets, 900 port rules, all Deny) so that Felix's apply of the change runs
    long, with `ipset restore` and `iptables-restore` children to kill it during."""
    if not big:
        return deny("secret")
    base = int(ipaddress.ip_address("198.19.128.0"))
    rules = []
    for r in range(BIG_NET_RULES):
        first = base + r * NETS_PER_RULE
        nets = ", ".join(f"{ipaddress.ip_address(first + i)}/32" for i in range(NETS_PER_RULE))
        rules.append(f"{{action: Deny, source: {{nets: [{nets}]}}}}")
    rules += [
        f"{{action: Deny, protocol: TCP, destination: {{ports: [{10_000 + i}]}}}}"
        for i in range(BIG_PORTS)
    ]
    return deny("secret", f"[{', '.join(rules)}]")


@dataclass(frozen=True, slots=True)
class Kill:
    command: str  # the kernel write Felix had running when it was killed ("": none seen)
    running: bool  # that child was still running once Felix was killed
    done: int = 0  # lines of the change (of `kernel_state`) in the kernel after the kill
    change: int = 0  # lines the change makes in all
    stray: int = 0  # lines in the kernel after the kill that are neither before nor after it
    back: float = 0.0  # seconds until the restarted Felix was in sync

    @property
    def mid_apply(self) -> bool:
        """Proven by the child still running, or by the kernel holding part of the change."""
        return self.running or 0 < self.done < self.change


def restore_child(pid: int) -> tuple[procs.Proc, str] | None:
    """A child of `pid` (of any of its threads) writing the kernel: `ipset restore` or an
    `iptables-restore`, with its command name."""
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue  # the thread ended
        for child in pids:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            name = Path(argv[0].decode()).name
            if name.endswith("-restore") or (name == "ipset" and b"restore" in argv):
                found = procs.identify(int(child))
                if found is not None:
                    return found, "ipset restore" if name == "ipset" else name
    return None


def kill_mid_apply(felix: procs.Proc, want: str = "", timeout: float = 60.0) -> Kill:
    """SIGKILL Felix (only Felix) as soon as it runs a kernel write (whose command contains
    `want`). The child has its whole input (a file) and finishes that write; it still
    running once Felix was killed proves Felix died mid-apply. Returns after it ended."""
    deadline = time.monotonic() + timeout
    found = None
    while found is None and time.monotonic() < deadline:
        found = restore_child(felix.pid)
        if found is None or want not in found[1]:
            found = None
            time.sleep(0.001)
    procs.signal_proc(felix, signal.SIGKILL)
    running = found is not None and procs.alive(found[0])
    procs.wait_gone([felix, *([found[0]] if found else [])], 10.0)
    return Kill(found[1] if found else "", running)


def kernel_state(lab: Lab, host: str) -> list[str]:
    """Our part of `host`'s kernel: cali chains and rules of every table of both families,
    our IP sets with their members (sorted); counters and each set's hash tuning left out."""
    runner = programs.Runner(lab.netns(host))
    backend = detect_backend(runner)
    lines = []
    for version in (4, 6):
        tool = f"{'ip6' if version == 6 else 'ip'}tables-{backend}-save"
        for line in runner.run([tool]).stdout.splitlines():
            if line.startswith(":" + naming.CHAIN_PREFIX):
                lines.append(f"v{version} {line.split()[0]}")
            elif line.startswith("*") or (
                line.startswith("-A") and naming.RULE_HASH_PREFIX in line
            ):
                lines.append(f"v{version} {line}")
    sets = parse_ipset_save(
        runner.run(["ipset", "save"]).stdout,
        lambda name: naming.owns_ipset(4, name) or naming.owns_ipset(6, name),
    )
    for name, kset in sorted(sets.items()):
        lines += [f"set {name} {kset.type} {kset.family}"]
        lines += sorted(f"set {name} member {m}" for m in kset.members)
    return lines


def clean_felix_state(lab: Lab, host: str) -> list[str]:
    """`kernel_state` as a Felix starting on a kernel without any of our state writes it:
    Felix killed while idle, our chains, hooks and sets removed, then the node's restart."""
    felix = procs.from_pid_file(lab.run_dir(host) / "felix.pid")
    assert felix is not None
    lab.felix_marks[host] = (lab.run_dir(host) / "felix.log").stat().st_size
    procs.kill([felix])
    runner = programs.Runner(lab.netns(host))
    backend = detect_backend(runner)
    apply_tables([IptablesTable(t, v, runner, backend=backend) for v in (4, 6) for t in TABLES])
    IPSetWriter(runner, [IPSets(4, runner), IPSets(6, runner)]).apply_deletions()
    _since(time.monotonic(), lambda: lab.node_problem(host) is None, 90, "Felix in sync")
    return kernel_state(lab, host)


def felix_killed(lab: Lab, kills: int = 2) -> Row:
    """Felix on host-2 killed `kills` times, each while applying a change of the policy that
    denies client -> secret: spelt big, killed during its `ipset restore` (of 20k members)
    or, every other time, its iptables-restore (of 1k rules); then back plain, killed at its
    first kernel write."""
    host = "host-2"
    felix_log = lab.run_dir(host) / "felix.log"
    landed: list[Kill] = []
    initial = kernel_state(lab, host)  # what the plain policy makes
    with probing(lab) as window:
        for i in range(kills):
            felix = procs.from_pid_file(lab.run_dir(host) / "felix.pid")
            assert felix is not None
            lab.felix_marks[host] = felix_log.stat().st_size
            before = set(kernel_state(lab, host))
            big = i % 2 == 0
            apply(lab, secret_policy(big))
            kill = kill_mid_apply(felix, ("ipset", "tables")[i // 2 % 2] if big else "")
            started = time.monotonic()
            at_kill = set(kernel_state(lab, host))  # before the restarted Felix writes
            synced = lambda: lab.node_problem(host) is None  # noqa: E731
            back = _since(started, synced, 90, "Felix in sync")
            after = set(kernel_state(lab, host))
            change = before ^ after
            done = sum((line in at_kill) != (line in before) for line in change)
            stray = len(at_kill - before - after)
            landed.append(
                dataclasses.replace(kill, done=done, change=len(change), stray=stray, back=back)
            )
        time.sleep(2.0)
    if kills % 2:
        apply(lab, secret_policy(big=False))
        _since(time.monotonic(), lambda: kernel_state(lab, host) == initial, 60, "plain again")
    ok_after = lab.probe("client", "server", "tcp", 80).ok
    restarted = kernel_state(lab, host)
    clean = clean_felix_state(lab, host)
    mid = sum(k.mid_apply for k in landed)
    what = ", ".join(
        f"{k.command or 'no kernel write seen'} ({k.done} of {k.change} lines of the change in"
        f" the kernel after, in sync {k.back:.1f}s after)"
        for k in landed
    )
    return Row(
        "Felix SIGKILLed on host-2 mid-apply (calico node restarts it)",
        window[0],
        max(k.back for k in landed),
        "in sync",
        ok_after=ok_after,
        mid_apply=(mid, len(landed), what),
        stray=sum(k.stray for k in landed),
        repaired=(restarted == clean, len(restarted), len(set(restarted) ^ set(clean))),
    )


def latency(lab: Lab) -> float:
    """Seconds from allowing client -> `later` in etcd until a connection gets through."""
    apply(lab, deny("later"))
    address = lab.addresses("later")[0]
    _since(time.monotonic(), lambda: not lab.probe("client", "later").ok, 30, "blocked")
    waiter = _in(lab, "client", "first", f"{address}:80", "30")
    started = time.time()
    apply(lab, deny("later", ALLOW_CLIENT))
    out, _ = waiter.communicate(timeout=40)
    if out.strip() == "never":
        raise RuntimeError("the allow rule was never programmed")
    return float(out) - started


def etcd_down(lab: Lab, seconds: float) -> Row:
    floor = latency(lab)
    with probing(lab) as window:
        (member,) = lab.etcd_members()
        lab.kill_etcd_member(member)
        time.sleep(seconds)
        started = time.monotonic()
        lab.restart_etcd_member(member)
        back = time.monotonic() - started
        time.sleep(2.0)
    after = latency(lab)
    lab.client.delete(GlobalNetworkPolicy, "faults-later")
    return Row(
        f"etcd SIGKILLed, down {seconds:.0f}s, started again",
        window[0],
        back,
        "etcd healthy",
        (after, floor),
    )


@dataclass(frozen=True, slots=True)
class Report:
    up: float  # seconds the fresh lab took to come up
    rows: list[Row]  # a row per fault
    absent_start: float | None  # fresh_start_peer_absent (None: run without the border)
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load, at start and end


def run(
    etcd_seconds: float,
    border: bool = True,
    progress: Callable[[str], None] = print,
    absent_timeout: float = 300.0,
    felix_kills: int = 2,
) -> Report:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="calico-faults-") as tmp:
        spec = load_lab(LAB, "faults lab", Path(tmp))
        started = time.monotonic()
        with running_lab(spec, Path(tmp) / "state", lambda m: progress(f"lab: {m}")) as lab:
            up = time.monotonic() - started
            progress(f"lab up in {up:.1f}s")
            server = _in(lab, "server", "serve", str(STREAM_PORT))
            try:
                rows = _faults(lab, etcd_seconds, border, felix_kills, progress)
            finally:
                server.kill()
                server.wait()
            absent = fresh_start_peer_absent(lab, absent_timeout) if border else None
            return Report(up, rows, absent, (load, os.getloadavg()[0]))


def _faults(
    lab: Lab, etcd_seconds: float, border: bool, kills: int, progress: Callable[[str], None]
) -> list[Row]:
    apply(lab, deny("secret"))
    _since(time.monotonic(), lambda: not lab.probe("client", "secret").ok, 30, "deny")
    faults: list[Callable[[], Row]] = [lambda: bird_killed(lab)]
    faults += [lambda: border_killed(lab)] if border else []
    faults += [lambda: felix_killed(lab, kills), lambda: etcd_down(lab, etcd_seconds)]
    rows = []
    for fault in faults:
        rows.append(fault())
        progress(f"{rows[-1].fault}: {figure(rows[-1])}")
    return rows


def fresh_starts(count: int, progress: Callable[[str], None] = print) -> list[float]:
    """Seconds each of `count` fresh labs took to come up (every BIRD starts from nothing)."""
    times = []
    for _ in range(count):
        with tempfile.TemporaryDirectory(prefix="calico-faults-") as tmp:
            spec = load_lab(LAB, "faults lab", Path(tmp))
            started = time.monotonic()
            with running_lab(spec, Path(tmp) / "state"):
                times.append(time.monotonic() - started)
        progress(f"fresh lab up in {times[-1]:.1f}s")
    return times


HEADER = "| test | figure | goal | date | machine |\n| --- | --- | --- | --- | --- |"
GOAL = "0 pings lost, 0 stream bytes lost, 0 denied through, new connections work"


def figure(r: Row) -> str:
    w = r.window
    stream = f"stream {w.stream_lost} of {w.stream_sent} B lost" + (
        f" ({w.stream_error})" if w.stream_error else ", survived"
    )
    parts = [
        f"pings {w.pings_lost} of {w.pings} lost",
        f"{stream}, longest stall {w.stream_stall:.2f}s",
        f"denied {w.knocks_through} of {w.knocks} through",
        f"{r.back_what} after {r.back:.2f}s",
    ]
    if r.latency is not None:
        after, floor = r.latency
        parts.append(f"a change after it returned: {after:.2f}s (floor {floor:.2f}s)")
    if r.mid_apply is not None:
        landed, kills, what = r.mid_apply
        parts.append(f"killed mid-apply {landed} of {kills} times (during: {what})")
        parts.append(f"{r.stray} kernel lines neither old nor new after the kills")
    if r.repaired is not None:
        same, lines, differ = r.repaired
        parts.append(
            f"kernel after restart = a clean Felix's ({lines} lines of our chains and sets)"
            if same
            else f"kernel after restart differs from a clean Felix's in {differ} lines"
        )
    if not r.ok_after:
        parts.append("a new allowed connection FAILED")
    return "; ".join(parts) + ("" if r.met else " (goal NOT met)")


def table(rows: list[Row], when: str = "", machine: str = "") -> str:
    lines = [HEADER]
    for r in rows:
        goal = GOAL + ("; change within 1 s of the floor" if r.latency else "")
        if r.mid_apply:
            goal += "; every kill mid-apply, no kernel line neither old nor new, kernel repaired"
        lines.append(f"| {r.fault} | {figure(r)} | {goal} | {when} | {machine} |")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    """Median (min-max, n) of some seconds."""
    low, high = min(values), max(values)
    return f"{statistics.median(values):.1f}s median ({low:.1f}-{high:.1f}s, {len(values)} starts)"


def section(report: Report, starts: list[float]) -> str:
    """This suite's part of docs/reliability.md."""
    when, machine = run_stamp()
    return "\n".join([
        "## Faults (bench/faults.py)", "",
        f"Run {when} on {machine}, load {report.load[0]:.1f} at the start of the faults, "
        f"{report.load[1]:.1f} at the end. Pings: 20 a second from `client` (host-1; from "
        "`outside` for the border) to `server` (host-2); the stream: 64 bytes every 10 ms from "
        "`client` to `server`, echoed; denied: `client` -> `secret`, a connection tried every "
        "20 ms (each waits 100 ms for an answer).",
        f"A fresh lab (2 hosts, a border, 4 workloads) came up in {_spread(starts)}.",
        "Felix was killed each time the moment it ran an `ipset restore` or iptables-restore "
        "child of a rewrite of the policy guarding the denied flow (big: 20k CIDRs in 80 IP "
        "sets and 900 more rules, all Deny; then a plain deny again); mid-apply means that "
        "child outlived Felix or the kernel held part of the change. Its kernel state after the "
        "restarts (our chains, rules and IP sets of both families) was compared with what a "
        "Felix starting on a kernel without them writes.",
        *([] if report.absent_start is None else [
            f"A calico node started from nothing on host-1 while its border peer was down "
            f"routed to host-2's workloads after {report.absent_start:.1f}s (BIRD is started "
            "in graceful restart recovery only when a previous BIRD's routes are in the kernel; "
            "started so always, BIRD held every route back for its 240 s "
            "`graceful restart wait`)."]),
        "", table(report.rows, when, machine),
    ])  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "watch", "first"):
        mode, args = sys.argv[1], sys.argv[2:]
        if mode == "serve":
            serve(int(args[0]))
        elif mode == "watch":
            watch(args[0], args[1])
        else:
            first(args[0], float(args[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcd-down", type=float, default=60.0, help="seconds etcd is down")
    parser.add_argument("--no-border", action="store_true", help="skip the FRR border fault")
    parser.add_argument("--starts", type=int, default=5, help="fresh lab starts to time")
    parser.add_argument("--felix-kills", type=int, default=4, help="Felix kills mid-apply")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args()
    starts = fresh_starts(opts.starts)
    report = run(opts.etcd_down, border=not opts.no_border, felix_kills=opts.felix_kills)
    starts.append(report.up)
    text = section(report, starts)
    print(text)
    if not opts.no_write:
        write_section(DOC, "faults", text)


if __name__ == "__main__":
    main()
