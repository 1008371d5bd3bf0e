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
(the veth work rides along with its endpoint's write).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

CHURN_V4 = "198.19.{}.{}"  # churned endpoints: 198.19.<slot // 250>.<slot % 250 + 1>
Change = Callable[[], object]


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


@dataclass(frozen=True, slots=True)
class ChurnRun:
    changes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.changes / self.seconds if self.seconds else 0.0


class Churner:
    """Churns `endpoints` workload endpoints and `policies` policies, profiles and network
    sets on `node` (host namespace `host`), through `client`."""

    def __init__(
        self,
        ns: Namespaces,
        host: str,
        node: str,
        client: ResourceClient,
        endpoints: int = 20,
        policies: int = 10,
    ) -> None:
        self.ns, self.host, self.node, self.client = ns, host, node, client
        self.endpoints, self.policies = endpoints, policies
        self.peers = ns.add("churn-wl")
        self._names: dict[int, str] = {}
        # Inserts that found the previous holder's entry of the same address still there.
        self.stale_conntrack: list[str] = []

    def round(self) -> list[list[Change]]:
        """Two waves (create everything, then delete everything), each a list of changes."""
        creates: list[Change] = []
        deletes: list[Change] = []
        for i in range(self.endpoints):
            creates.append(partial(self._add_endpoint, i))
            deletes.append(partial(self._del_endpoint, i))
        for i in range(self.policies):
            for kind, doc in self._docs(i):
                creates.append(partial(self._apply, doc))
                deletes.append(partial(self.client.delete, kind, doc["metadata"]["name"]))
        return [creates, deletes]

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

    def _add_endpoint(self, i: int) -> None:
        iface, peer, ip = f"calich{i}", f"chp{i}", CHURN_V4.format(i // 250, i % 250 + 1)
        link = f"link add {iface} type veth peer name {peer} netns {self.peers}\n"
        self.ns.exec(self.host, ["ip", "-batch", "-"], stdin=f"{link}link set {iface} up\n")
        self.ns.exec(self.peers, ["ip", "link", "set", peer, "up"])
        mac = self.ns.exec(self.peers, ["cat", f"/sys/class/net/{peer}/address"]).stdout.strip()
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
        ct = ["conntrack", "-I", "-p", "udp", "-s", ip, "-d", "198.18.255.2"]
        ct += ["--sport", "5000", "--dport", "53", "--timeout", "600"]
        if self.ns.exec(self.host, ct, check=False).returncode != 0:
            self.stale_conntrack.append(ip)

    def _del_endpoint(self, i: int) -> None:
        self.client.delete(WorkloadEndpoint, self._names.pop(i), "churn")
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
