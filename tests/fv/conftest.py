"""FV fixtures: real etcd, real Felix processes inside host namespaces, real workloads.

Felix runs exactly as an operator runs it: `calico-felix` with NODENAME and ETCD_ENDPOINTS
in its environment and nothing else (plus CALICO_RUN_DIR so parallel hosts never share a
path). It reaches the test etcd through its unix socket, since the etcd's loopback address
is not reachable from inside another network namespace.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico import programs
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.model import parse_resource
from calico.model.base import Resource
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces
from calico.testing.workloads import Workload, add_upstream, add_workload

pytestmark = pytest.mark.fv
FELIX = str(Path(sys.executable).parent / "calico-felix")
IN_SYNC = "dataplane in sync with the datastore"
# Short refresh intervals so that FV tests see periodic repairs and reports quickly.
FAST_ENV = {
    "FELIX_IPTABLESREFRESHINTERVAL": "2",
    "FELIX_ROUTEREFRESHINTERVAL": "2",
    "FELIX_IPSETSREFRESHINTERVAL": "2",
    "FELIX_REPORTINGINTERVALSECS": "1",
}


def wait_until(
    predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    waiting.wait_until(predicate, timeout, what)


class FelixHost:
    def __init__(self, ns: Namespaces, etcd: EtcdServer, node: str, tmp: Path, **env: str) -> None:
        self.ns = ns
        self.node = node
        self.netns = ns.add(node)
        self.etcd = etcd
        self.run_dir = tmp / node
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / "felix.log"
        self.extra_env = env
        self.proc: programs.Popen[bytes] | None = None
        self._log_mark = 0
        self.upstream = add_upstream(ns, self.netns, f"{node}-up")

    def start(self, **env: str) -> None:
        """Start Felix (`env` adds to / overrides the host's environment for this run)."""
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NODENAME": self.node,
            "ETCD_ENDPOINTS": self.etcd.unix_endpoint,
            "CALICO_RUN_DIR": str(self.run_dir),
            **self.extra_env,
            **env,
        }
        self._log_mark = self.log.stat().st_size if self.log.exists() else 0
        self.proc = self.ns.popen(self.netns, [FELIX], env=full_env, log=str(self.log))

    def log_since_start(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self._log_mark)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until this run of Felix has applied its first in-sync dataplane."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"felix exited {self.proc.returncode}:\n{self.log_tail()}")
            return IN_SYNC in self.log_since_start()

        wait_until(ready, timeout, f"felix on {self.node} in sync")

    def kill(self) -> None:
        """SIGKILL Felix (its process group, by PID): no clean-up of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def iptables_save(self, table: str = "filter", version: int = 4, counters: bool = False) -> str:
        tool = "ip6tables-save" if version == 6 else "iptables-save"
        args = [tool, "-t", table] + (["-c"] if counters else [])
        return self.exec(args).stdout

    def cali_lines(self, table: str = "filter", version: int = 4) -> list[str]:
        """Calico's chain declarations and rules (also its hooks in kernel chains)."""
        lines = self.iptables_save(table, version).splitlines()
        return [ln for ln in lines if "cali" in ln and ln.startswith((":", "-A"))]

    def chain(self, name: str, table: str = "filter", version: int = 4) -> list[str]:
        """The rules of one chain (empty if absent)."""
        lines = self.iptables_save(table, version).splitlines()
        return [ln for ln in lines if ln.startswith(f"-A {name} ")]

    def has_chain(self, name: str, table: str = "filter", version: int = 4) -> bool:
        return f":{name} " in self.iptables_save(table, version)

    def routes(self, version: int = 4) -> str:
        return self.exec(["ip", f"-{version}", "route", "show"]).stdout

    def exec(self, args: list[str], check: bool = True) -> programs.CompletedProcess[str]:
        return self.ns.exec(self.netns, args, check=check)

    def add_workload(self, iface: str, ipv4: str | None, ipv6: str | None = None) -> Workload:
        return add_workload(self.ns, self.netns, iface, ipv4, ipv6, name=f"{self.node}-{iface}")

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else "(no log)"


class Cluster:
    def __init__(self, ns: Namespaces, etcd: EtcdServer, tmp: Path) -> None:
        self.ns = ns
        self.etcd = etcd
        self.tmp = tmp
        self.backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        self.client = ResourceClient(self.backend)
        self.client.ensure_initialized()
        self.hosts: list[FelixHost] = []

    def host(self, node: str, fast: bool = True, **env: str) -> FelixHost:
        host = FelixHost(
            self.ns, self.etcd, node, self.tmp, **({**FAST_ENV, **env} if fast else env)
        )
        self.hosts.append(host)
        return host

    def apply(self, doc: dict[str, Any]) -> Resource:
        doc = {"apiVersion": "projectcalico.org/v3", **doc}
        return self.client.apply(parse_resource(doc))

    def delete(self, kind: type[Resource], name: str, namespace: str | None = None) -> None:
        self.client.delete(kind, name, namespace)

    def add_endpoint(
        self,
        host: FelixHost,
        wl: Workload,
        pod: str,
        ns: str = "default",
        profiles: tuple[str, ...] = ("projectcalico-default-allow",),
        extra: dict[str, Any] | None = None,
        **labels: str,
    ) -> Resource:
        """A WorkloadEndpoint for `wl` (`extra`: more spec fields, e.g. ports)."""
        nets = [f"{ip}/32" for ip in (wl.ipv4,) if ip] + [f"{ip}/128" for ip in (wl.ipv6,) if ip]
        return self.apply({
            "kind": "WorkloadEndpoint",
            "metadata": {"namespace": ns, "labels": labels},
            "spec": {
                "node": host.node, "orchestrator": "k8s", "pod": pod, "endpoint": "eth0",
                "interfaceName": wl.host_iface, "mac": wl.mac, "ipNetworks": nets,
                "profiles": list(profiles), **(extra or {}),
            },
        })  # fmt: skip

    def close(self) -> None:
        for host in self.hosts:
            host.kill()
        self.backend.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root: runs Felix in network namespaces")
    for tool in ("etcd", "iptables-restore", "ipset", "ip", "conntrack"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")
    with EtcdServer() as etcd, Namespaces() as ns:
        cluster = Cluster(ns, etcd, tmp_path)
        try:
            yield cluster
        finally:
            for host in cluster.hosts:
                if host.proc is not None:
                    print(f"--- felix log {host.node} ---\n{host.log_tail()}")
            cluster.close()
