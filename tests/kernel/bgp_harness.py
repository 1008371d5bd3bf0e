"""Hosts on one bridge, each with BIRD 2 and a BGPAgent, against a real etcd: the harness of
the kernel tier's BGP tests.

Topology (all namespaces created here):
  fabric: br0 --veth-- host-<name>:eth0 198.18.0.<i>/24 2001:db8::<i>/64 (one per host)
Each host: BIRD (`bird -f -c run/bird.cfg -s run/bird.ctl -P run/bird.pid`, run by the test in
the host namespace, killed by PID with the namespaces) and a BGPAgent (a thread of this
process; it only writes files and talks to BIRD's unix socket). Each host has its own
secrets directory (CALICO_SECRETS_DIR), re-read every 0.2 s, so rewriting a file is all it
takes to change a BGP password.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from calico import programs
from calico.bgp.agent import BGPAgent
from calico.bgp.birdctl import PeerStatus, bgp_peers
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.model import parse_resource
from calico.model.base import Resource
from calico.programs import CommandResult, Runner
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    waiting.wait_until(predicate, timeout, what, interval=0.2)


class ReloadCounter:
    """The agent's real runner, counting `birdc configure` calls that failed."""

    def __init__(self) -> None:
        self.inner = Runner(timeout=30.0)
        self.failed_reloads = 0

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        result = self.inner.run(args, stdin=stdin, check=check)
        if programs.name_of(args[0]) == "birdc" and result.returncode != 0:
            self.failed_reloads += 1
        return result


class BgpHost:
    def __init__(self, lab: BgpLab, name: str, index: int) -> None:
        self.lab, self.name, self.index = lab, name, index
        self.node = f"node-{name}"
        self.ipv4, self.ipv6 = f"198.18.0.{index}", f"2001:db8::{index}"
        self.netns = lab.ns.add(f"host-{name}")
        self.run_dir = lab.tmp / name / "run"
        self.secrets = lab.tmp / name / "secrets"
        self.run_dir.mkdir(parents=True)
        lab.ns.veth(self.netns, "eth0", lab.fabric, f"{lab.ns.prefix}{name}")
        lab.fabric_exec(["ip", "link", "set", f"{lab.ns.prefix}{name}", "master", "br0"])
        self.exec(["ip", "addr", "add", f"{self.ipv4}/24", "dev", "eth0"])
        self.exec(["ip", "-6", "addr", "add", f"{self.ipv6}/64", "dev", "eth0", "nodad"])
        self.runner = ReloadCounter()
        self.agent = BGPAgent(
            EtcdBackend.from_env({"ETCD_ENDPOINTS": lab.etcd.endpoint}),
            self.node,
            self.run_dir,
            runner=self.runner,
            debounce=0.05,
            retry_interval=0.5,
            secrets_dir=self.secrets,
            secret_interval=0.2,
        )

    def exec(self, args: list[str]) -> str:
        return self.lab.ns.exec(self.netns, args).stdout

    def start_bird(self) -> None:
        run = self.run_dir
        args = ["bird", "-f", "-c", f"{run}/bird.cfg", "-s", f"{run}/bird.ctl", "-P"]
        self.lab.ns.popen(self.netns, [*args, f"{run}/bird.pid"], log=str(run / "bird.log"))

    def start(self) -> None:
        """As the node runner does it: render, start BIRD, start the agent."""
        assert self.agent.render_now()
        self.start_bird()
        self.agent.start()

    def config(self) -> str:
        return (self.run_dir / "bird.cfg").read_text()

    def secret(self, key: str, value: str | None) -> None:
        """Write (mode 0600) or remove the file of secret bgp/<key>."""
        path = self.secrets / "bgp" / key
        if value is None:
            path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}")
        tmp.write_text(value + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)

    def routes(self, version: int) -> list[dict[str, Any]]:
        out = self.exec(["ip", "-j", f"-{version}", "route", "show"])
        return list(json.loads(out or "[]"))

    def route(self, dst: str) -> dict[str, Any] | None:
        version = 6 if ":" in dst else 4
        return next((r for r in self.routes(version) if r["dst"] == dst), None)

    def peers(self) -> list[PeerStatus]:
        try:
            return bgp_peers(self.run_dir / "bird.ctl")
        except Exception:  # BIRD not (yet) answering
            return []

    def sessions(self) -> dict[str, str]:
        """Peer address -> BIRD's state text, for the sessions BIRD has."""
        return {p.address: p.info for p in self.peers()}

    def established(self) -> set[str]:
        return {p.address for p in self.peers() if p.info.startswith("Established")}

    def md5_failures(self) -> int:
        """The namespace's TcpExt TCPMD5Failure: segments dropped for a wrong MD5 digest."""
        out = self.exec(["cat", "/proc/net/netstat"])
        names, values = (line.split() for line in out.splitlines() if line.startswith("TcpExt:"))
        return int(dict(zip(names, values, strict=True))["TCPMD5Failure"])


class BgpLab:
    def __init__(
        self, ns: Namespaces, etcd: EtcdServer, tmp: Path, hosts: Mapping[str, int]
    ) -> None:
        self.ns, self.etcd, self.tmp = ns, etcd, tmp
        self.backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        self.client = ResourceClient(self.backend)
        self.fabric = ns.add("fabric")
        self.fabric_exec(["ip", "link", "add", "br0", "type", "bridge"])
        self.fabric_exec(["ip", "link", "set", "br0", "up"])
        self.hosts = {name: BgpHost(self, name, i) for name, i in hosts.items()}

    def fabric_exec(self, args: list[str]) -> None:
        self.ns.exec(self.fabric, args)

    def apply(self, doc: dict[str, Any]) -> Resource:
        return self.client.apply(parse_resource({"apiVersion": "projectcalico.org/v3", **doc}))

    def close(self) -> None:
        for host in self.hosts.values():
            host.agent.stop()
        self.backend.close()


@contextmanager
def bgp_lab(netns: Namespaces, tmp: Path, hosts: Mapping[str, int]) -> Iterator[BgpLab]:
    """A BgpLab with its own etcd; BIRD logs are printed at the end (shown on failure)."""
    for tool in ("bird", "birdc", "etcd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs bird2 and etcd)")
    with EtcdServer() as etcd:
        lab = BgpLab(netns, etcd, tmp, hosts)
        try:
            yield lab
        finally:
            lab.close()
            for host in lab.hosts.values():
                log = host.run_dir / "bird.log"
                if log.exists():
                    print(f"--- bird log {host.name} ---\n{log.read_text()[-3000:]}")
