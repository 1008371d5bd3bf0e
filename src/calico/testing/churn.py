"""Endpoint and policy churn against a running Felix host, and what it leaves behind.

A churn round creates a fixed set of items and then deletes them all, so every round ends
where it began: workload endpoints (a veth whose host side is `cali…`, its peer in a shared
workload namespace, then the WorkloadEndpoint; on delete the WorkloadEndpoint and then the
veth, as the CNI plugin's ADD and DEL do), GlobalNetworkPolicies whose rules select the
churned endpoints (so Felix makes IP sets), Profiles and GlobalNetworkSets. Each endpoint
gets one conntrack entry from its address (`conntrack -I`, a real kernel entry as a flow
leaves), so that Felix's conntrack cleanup for removed addresses is counted too; an insert
that finds the previous holder's entry still there (the address came back before Felix's
cleanup of it ran) is counted, not failed.

Changes are paced at `rate` per second over a thread pool; a change is one datastore write
(the veth work rides along with its endpoint's write). For rates above a few dozen changes
per second the veths are made once up front (`precreate`) and stay, as the CNI plugin's
work is not Felix's: deleting a veth takes the kernel ~20 ms, serialised, which alone caps
veth churn near 50 deletions/s here.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from calico import programs
from calico.datastore.client import ResourceClient
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.endpoints import WorkloadEndpoint
from calico.model.policy import GlobalNetworkPolicy, GlobalNetworkSet, Profile
from calico.testing.netns import Namespaces
from calico.testing.proc import proc_cpu

CHURN_V4 = "198.19.{}.{}"  # churned endpoints: 198.19.<slot // 250>.<slot % 250 + 1>
Change = Callable[[], object]


def churn_ip(i: int) -> str:
    return CHURN_V4.format(i // 250, i % 250 + 1)


@dataclass(frozen=True, slots=True)
class Step:
    """One change of a round: endpoint `index` (or policy set `index`: a network set, a
    profile and a policy, `part` 0-2) created (`present`) or deleted."""

    endpoint: bool
    index: int
    present: bool
    part: int = 0


def proc_rss(pid: int) -> int:
    """VmRSS of a process in bytes (/proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass(frozen=True, slots=True)
class KernelState:
    """What Felix programs that churn could leave behind, in the host namespace."""

    routes: frozenset[str]  # route lines on cali* devices (v4 and v6)
    chains: frozenset[str]  # "<family> <table> <chain>" of every cali- chain
    ipsets: frozenset[str]
    conntrack: int  # entries from or to churned addresses

    def leftovers(self, baseline: KernelState) -> dict[str, int]:
        return {
            "routes": len(self.routes - baseline.routes),
            "chains": len(self.chains - baseline.chains),
            "ipsets": len(self.ipsets - baseline.ipsets),
            "conntrack": self.conntrack - baseline.conntrack,
        }


def _saved(ns: Namespaces, host: str, tool: str, attempts: int = 5) -> str:
    """An iptables-nft save taken while Felix writes can fail on a set the kernel just
    dropped ("Set with index N in kernel doesn't exist"): take it again."""
    for _ in range(attempts - 1):
        try:
            return ns.exec(host, [tool]).stdout
        except programs.CommandFailed as exc:
            if "doesn't exist" not in exc.stderr:
                raise
        time.sleep(0.2)
    return ns.exec(host, [tool]).stdout


def snapshot(ns: Namespaces, host: str) -> KernelState:
    run = ns.exec
    routes = {
        line.strip()
        for v in (4, 6)
        for line in run(host, ["ip", f"-{v}", "route", "show"]).stdout.splitlines()
        if " dev cali" in line
    }
    chains = {
        f"{tool} {table} {m.group(1)}"
        for tool in ("iptables-save", "ip6tables-save")
        for table, body in _tables(_saved(ns, host, tool))
        for m in re.finditer(r"^:(cali-\S+)", body, re.M)
    }
    ipsets = set(run(host, ["ipset", "list", "-n"]).stdout.split())
    dump = run(host, ["conntrack", "-L", "-f", "ipv4"], check=False).stdout
    conntrack = sum(1 for line in dump.splitlines() if "src=198.19." in line)
    return KernelState(frozenset(routes), frozenset(chains), frozenset(ipsets), conntrack)


def _tables(save: str) -> Iterable[tuple[str, str]]:
    for part in save.split("\n*")[1:]:
        name, _, body = part.partition("\n")
        yield name.strip(), body


class RouteLag:
    """Dataplane lag of churned endpoints: from just before an endpoint's datastore write
    (`expect`) to the kernel adding or deleting its route in `host`, as `ip monitor` reports
    it. The kernel pushes the events (nothing is polled) and `ip` stamps each one as it
    arrives, so the reading thread's delays do not count. A write superseded before its
    route changed (the endpoint deleted before Felix had routed it: Felix coalesced the
    two) is counted apart."""

    def __init__(self, host: str) -> None:
        self._proc = programs.start(
            ["ip", "-n", host, "-tshort", "monitor", "route"],
            stdout=programs.PIPE,
            text=True,
            new_session=True,
        )
        self._lock = threading.Lock()
        self._expected: dict[str, tuple[bool, float]] = {}
        self.lags: list[float] = []
        self.superseded = 0
        self._reader = threading.Thread(target=self._read, name="route-lag", daemon=True)
        self._reader.start()

    def expect(self, ip: str, present: bool) -> None:
        with self._lock:
            self.superseded += ip in self._expected
            self._expected[ip] = (present, time.time())

    def outstanding(self) -> int:
        with self._lock:
            return len(self._expected)

    def reset(self) -> None:
        with self._lock:
            self._expected.clear()
            self.lags, self.superseded = [], 0

    def cpu(self) -> float:
        """CPU seconds of the observer: `ip monitor` and the thread reading it."""
        own = proc_cpu(f"/proc/{self._proc.pid}/stat")[0]
        native = self._reader.native_id
        return own + proc_cpu(f"/proc/self/task/{native}/stat")[0]

    def close(self) -> None:
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=10)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            m = _MONITOR_LINE.match(line)
            if m is None:
                continue
            when = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            present, ip = m.group(2) is None, m.group(3)
            with self._lock:
                want = self._expected.get(ip)
                if want is not None and want[0] == present:
                    del self._expected[ip]
                    self.lags.append(when - want[1])


# "[2026-12-07T08:39:52.632515] Deleted 198.19.0.5 dev calich4 proto 80 scope link"
_MONITOR_LINE = re.compile(r"\[(\S+)\] (Deleted )?(198\.19\.\d+\.\d+) dev cali")


@dataclass(frozen=True, slots=True)
class ChurnRun:
    changes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.changes / self.seconds if self.seconds else 0.0


class Churner:
    """Churns `endpoints` workload endpoints and `policies` policies, profiles and network
    sets on `node` (host namespace `host`), through `client`. `precreate`: the veths are
    made once and stay; `conntrack`: one entry per endpoint add (see the module's doc).
    `on_endpoint_write(ip, present)` is called just before each endpoint's datastore write."""

    def __init__(
        self,
        ns: Namespaces,
        host: str,
        node: str,
        client: ResourceClient,
        endpoints: int = 20,
        policies: int = 10,
        *,
        precreate: bool = False,
        conntrack: bool = True,
        on_endpoint_write: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.ns, self.host, self.node, self.client = ns, host, node, client
        self.endpoints, self.policies = endpoints, policies
        self.conntrack, self.on_endpoint_write = conntrack, on_endpoint_write
        self.peers = ns.add("churn-wl")
        self._names: dict[int, str] = {}
        self._macs: dict[int, str] = {}
        # Inserts that found the previous holder's entry of the same address still there.
        self.stale_conntrack: list[str] = []
        if precreate:
            self._macs = self._make_veths(range(endpoints))

    def plan(self) -> list[list[Step]]:
        """Two waves (create everything, then delete everything), endpoints and policy sets
        interleaved so that each part of a wave has both."""
        waves: list[list[Step]] = []
        for present in (True, False):
            wave = []
            for i in range(max(self.endpoints, self.policies)):
                if i < self.endpoints:
                    wave.append(Step(True, i, present))
                if i < self.policies:
                    wave += [Step(False, i, present, part) for part in range(3)]
            waves.append(wave)
        return waves

    def round(self) -> list[list[Change]]:
        """The plan's waves as changes."""
        return [[self._change(step) for step in wave] for wave in self.plan()]

    def _change(self, step: Step) -> Change:
        if step.endpoint:
            return partial(self._add_endpoint if step.present else self._del_endpoint, step.index)
        kind, doc = self._docs(step.index)[step.part]
        if step.present:
            return partial(self._apply, doc)
        return partial(self.client.delete, kind, doc["metadata"]["name"])

    def churn(self, seconds: float, rate: float, threads: int = 8) -> ChurnRun:
        """Whole rounds at `rate` changes/s until `seconds` have passed (the last round is
        always finished, so the datastore ends as it began)."""
        done = 0
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            while time.monotonic() - started < seconds:
                for wave in self.round():
                    due = time.monotonic()
                    futures = []
                    for change in wave:
                        time.sleep(max(0.0, due - time.monotonic()))
                        futures.append(pool.submit(change))
                        due += 1.0 / rate
                    for future in futures:
                        future.result()  # a failed change fails the run
                    done += len(wave)
        return ChurnRun(done, time.monotonic() - started)

    def _apply(self, doc: dict[str, Any]) -> Resource:
        return self.client.apply(parse_resource({"apiVersion": "projectcalico.org/v3", **doc}))

    def _make_veths(self, indexes: Iterable[int]) -> dict[int, str]:
        """Veths `calich<i>` (host side, up) to `chp<i>` in the workload namespace (up);
        returns their workload-side MACs."""
        indexes = list(indexes)
        adds = "".join(
            f"link add calich{i} type veth peer name chp{i} netns {self.peers}\n"
            f"link set calich{i} up\n"
            for i in indexes
        )
        self.ns.exec(self.host, ["ip", "-batch", "-"], stdin=adds)
        ups = "".join(f"link set chp{i} up\n" for i in indexes)
        self.ns.exec(self.peers, ["ip", "-batch", "-"], stdin=ups)
        return {
            i: self.ns.exec(self.peers, ["cat", f"/sys/class/net/chp{i}/address"]).stdout.strip()
            for i in indexes
        }

    def _add_endpoint(self, i: int) -> None:
        iface, ip = f"calich{i}", churn_ip(i)
        mac = self._macs[i] if i in self._macs else self._make_veths([i])[i]
        if self.on_endpoint_write is not None:
            self.on_endpoint_write(ip, True)
        wep = self._apply({
            "kind": "WorkloadEndpoint",
            "metadata": {"namespace": "churn", "labels": {"churn": "yes", "slot": str(i % 4)}},
            "spec": {
                "node": self.node, "orchestrator": "k8s", "pod": f"churn{i}", "endpoint": "eth0",
                "interfaceName": iface, "mac": mac, "ipNetworks": [f"{ip}/32"],
                "profiles": [f"churn-p{i % self.policies}"],
            },
        })  # fmt: skip
        self._names[i] = str(wep.metadata.name)
        if not self.conntrack:
            return
        ct = ["conntrack", "-I", "-p", "udp", "-s", ip, "-d", "198.18.255.2"]
        ct += ["--sport", "5000", "--dport", "53", "--timeout", "600"]
        if self.ns.exec(self.host, ct, check=False).returncode != 0:
            self.stale_conntrack.append(ip)

    def _del_endpoint(self, i: int) -> None:
        if self.on_endpoint_write is not None:
            self.on_endpoint_write(churn_ip(i), False)
        self.client.delete(WorkloadEndpoint, self._names.pop(i), "churn")
        if i not in self._macs:
            self.ns.exec(self.host, ["ip", "link", "del", f"calich{i}"])

    def _docs(self, i: int) -> list[tuple[type[Resource], dict[str, Any]]]:
        peers = {"source": {"selector": f"slot == '{i % 4}' || churnset == 'n{i}'"}}
        return [
            (GlobalNetworkSet, {"kind": "GlobalNetworkSet",
                "metadata": {"name": f"churn-n{i}", "labels": {"churnset": f"n{i}"}},
                "spec": {"nets": [f"198.18.{200 + i % 50}.0/24"]}}),
            (Profile, {"kind": "Profile", "metadata": {"name": f"churn-p{i}"},
                "spec": {"ingress": [{"action": "Allow", **peers}],
                         "egress": [{"action": "Allow"}]}}),
            (GlobalNetworkPolicy, {"kind": "GlobalNetworkPolicy",
                "metadata": {"name": f"churn-g{i}"},
                "spec": {"selector": f"slot == '{i % 4}'", "order": 100 + i,
                         "ingress": [{"action": "Allow", "protocol": "TCP", **peers,
                                      "destination": {"ports": [8000 + i]}}],
                         "egress": [{"action": "Allow"}]}}),
        ]  # fmt: skip
