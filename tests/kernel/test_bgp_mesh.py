"""BGP end to end: BGPAgent + BIRD 2 per host namespace, hosts on one bridge, real etcd.

Topology (all namespaces created here):
  fabric: br0 --veth-- host-a:eth0 198.18.0.1/24 2001:db8::1/64
              --veth-- host-b:eth0 198.18.0.2/24 2001:db8::2/64
              --veth-- host-c:eth0 198.18.0.3/24 2001:db8::3/64
Each host: BIRD (`bird -f -c run/bird.cfg -s run/bird.ctl -P run/bird.pid`, run by the test in
the host namespace, killed by PID) and a BGPAgent (a thread of this process; it only writes
files and talks to BIRD's unix socket). Host A has a workload whose /32 and /128 routes are
added with proto 80 on its cali interface, as Felix would, in its affine blocks; plus one
borrowed address from host B's block.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from calico import programs
from calico.bgp.agent import BGPAgent
from calico.bgp.birdctl import PeerStatus, bgp_peers
from calico.datastore.client import ResourceClient
from calico.datastore.etcd import EtcdBackend
from calico.ipam.keys import affinity_key
from calico.ipam.records import AffinityState, BlockAffinity
from calico.model import parse_resource
from calico.model.base import Resource
from calico.programs import CommandResult, Runner
from calico.testing import waiting
from calico.testing.etcd_server import EtcdServer
from calico.testing.netns import Namespaces
from calico.testing.workloads import add_workload

pytestmark = pytest.mark.kernel
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
HOSTS = {"a": 1, "b": 2, "c": 3}
BLOCKS = {"a": ("198.19.0.0/26", "2001:db8:100::/122"), "b": ("198.19.0.64/26", None)}


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
        self.run_dir = lab.tmp / name
        self.run_dir.mkdir()
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
        )
        self.bird: programs.Popen[bytes] | None = None

    def exec(self, args: list[str]) -> str:
        return self.lab.ns.exec(self.netns, args).stdout

    def start_bird(self) -> None:
        run = self.run_dir
        args = ["bird", "-f", "-c", f"{run}/bird.cfg", "-s", f"{run}/bird.ctl", "-P"]
        self.bird = self.lab.ns.popen(
            self.netns, [*args, f"{run}/bird.pid"], log=str(run / "bird.log")
        )

    def routes(self, version: int) -> list[dict[str, Any]]:
        out = self.exec(["ip", "-j", f"-{version}", "route", "show"])
        return list(json.loads(out or "[]"))

    def route(self, dst: str) -> dict[str, Any] | None:
        version = 6 if ":" in dst else 4
        return next((r for r in self.routes(version) if r["dst"] == dst), None)

    def peers(self) -> list[PeerStatus]:
        try:
            return bgp_peers(self.run_dir / "bird.ctl")
        except (OSError, Exception):
            return []

    def established(self) -> set[str]:
        return {p.address for p in self.peers() if p.info.startswith("Established")}


class BgpLab:
    def __init__(self, ns: Namespaces, etcd: EtcdServer, tmp: Path) -> None:
        self.ns, self.etcd, self.tmp = ns, etcd, tmp
        self.backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd.endpoint})
        self.client = ResourceClient(self.backend)
        self.fabric = ns.add("fabric")
        self.fabric_exec(["ip", "link", "add", "br0", "type", "bridge"])
        self.fabric_exec(["ip", "link", "set", "br0", "up"])
        self.hosts = {name: BgpHost(self, name, i) for name, i in HOSTS.items()}

    def fabric_exec(self, args: list[str]) -> None:
        self.ns.exec(self.fabric, args)

    def apply(self, doc: dict[str, Any]) -> Resource:
        return self.client.apply(parse_resource({"apiVersion": "projectcalico.org/v3", **doc}))

    def close(self) -> None:
        for host in self.hosts.values():
            host.agent.stop()
        self.backend.close()


@pytest.fixture
def lab(netns: Namespaces, tmp_path: Path) -> Iterator[BgpLab]:
    for tool in ("bird", "birdc", "etcd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs bird2 and etcd)")
    with EtcdServer() as etcd:
        lab = BgpLab(netns, etcd, tmp_path)
        try:
            yield lab
        finally:
            lab.close()
            for host in lab.hosts.values():
                log = host.run_dir / "bird.log"
                if log.exists():
                    print(f"--- bird log {host.name} ---\n{log.read_text()[-3000:]}")


def _setup_cluster(lab: BgpLab) -> None:
    for host in lab.hosts.values():
        bgp = {"ipv4Address": f"{host.ipv4}/24", "ipv6Address": f"{host.ipv6}/64"}
        lab.apply({"kind": "Node", "metadata": {"name": host.node}, "spec": {"bgp": bgp}})
    lab.apply({"kind": "IPPool", "metadata": {"name": "v4"}, "spec": {"cidr": "198.19.0.0/16"}})
    lab.apply({"kind": "IPPool", "metadata": {"name": "v6"}, "spec": {"cidr": "2001:db8:100::/48"}})
    confirmed = BlockAffinity(AffinityState.CONFIRMED).to_json()
    for name, blocks in BLOCKS.items():
        for cidr in filter(None, blocks):
            lab.backend.put(affinity_key(f"node-{name}", cidr), confirmed)


def _start(lab: BgpLab) -> None:
    """A and B as the node runner does it (render_now, BIRD, agent); C's agent starts first
    and must cope with BIRD not running yet (its reload is retried until BIRD answers)."""
    for host in (lab.hosts["a"], lab.hosts["b"]):
        assert host.agent.render_now()
        host.start_bird()
        host.agent.start()
    c = lab.hosts["c"]
    c.agent.start()
    wait_until(lambda: (c.run_dir / "bird.cfg").exists(), 10, "C's agent writes bird.cfg")
    wait_until(lambda: c.runner.failed_reloads >= 1, 10, "C's agent fails to reload BIRD")
    c.start_bird()


def _add_workload_routes(lab: BgpLab) -> None:
    """Host A: a workload with addresses in its own blocks, and one borrowed from B's."""
    a = lab.hosts["a"]
    wl = add_workload(lab.ns, a.netns, "cali0a1", "198.19.0.5", "2001:db8:100::5", name="wl-a")
    assert wl.ipv4
    for dst in ("198.19.0.5/32", "198.19.0.70/32", "2001:db8:100::5/128"):
        a.exec(["ip", "route", "replace", dst, "dev", "cali0a1", "proto", "80"])


def _via(host: BgpHost, dst: str, gateway: str) -> bool:
    route = host.route(dst)
    return bool(route and route.get("protocol") == "bird" and route.get("gateway") == gateway)


def test_mesh_routes_then_mesh_off_then_route_reflector(lab: BgpLab) -> None:
    _setup_cluster(lab)
    _start(lab)
    a, b, c = lab.hosts["a"], lab.hosts["b"], lab.hosts["c"]
    _add_workload_routes(lab)

    # Full mesh, IPv4 and IPv6: every host has an Established session with each other host.
    for host in (a, b, c):
        others = {f"198.18.0.{o.index}" for o in (a, b, c) if o is not host}
        others |= {f"2001:db8::{o.index}" for o in (a, b, c) if o is not host}
        wait_until(lambda h=host, o=others: h.established() == o, 30, f"{host.name} mesh up")

    # A advertises its blocks as aggregates (not the /32s inside), and the borrowed /32.
    for host in (b, c):
        wait_until(lambda h=host: _via(h, "198.19.0.0/26", a.ipv4), 20, "v4 block via A")
        wait_until(lambda h=host: _via(h, "2001:db8:100::/122", a.ipv6), 20, "v6 block via A")
        wait_until(lambda h=host: _via(h, "198.19.0.70", a.ipv4), 20, "borrowed /32 via A")
        assert host.route("198.19.0.5") is None  # aggregated
    assert _via(c, "198.19.0.64/26", b.ipv4)
    for host in (a, b, c):  # interface routes are not re-exported to the kernel
        assert not [
            r
            for r in host.routes(4) + host.routes(6)
            if r.get("dev") == "eth0" and r.get("protocol") == "bird" and "gateway" not in r
        ]
    blackhole = a.route("198.19.0.0/26")
    assert blackhole is not None and blackhole["type"] == "blackhole"
    assert blackhole["protocol"] == "bird"

    # Mesh off: sessions and routes go.
    lab.apply({
        "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False},
    })  # fmt: skip
    for host in (a, b, c):
        wait_until(lambda h=host: not h.peers(), 20, f"{host.name} sessions removed")
    for host in (b, c):
        wait_until(lambda h=host: h.route("198.19.0.0/26") is None, 20, "v4 block withdrawn")
        wait_until(lambda h=host: h.route("2001:db8:100::/122") is None, 20, "v6 withdrawn")

    # Explicit peers: C becomes a route reflector for everyone; A's routes reach B via C.
    bgp_c = {"ipv4Address": f"{c.ipv4}/24", "ipv6Address": f"{c.ipv6}/64"}
    lab.apply({
        "kind": "Node",
        "metadata": {"name": c.node, "labels": {"route-reflector": "true"}},
        "spec": {"bgp": {**bgp_c, "routeReflectorClusterID": "224.0.0.1"}},
    })  # fmt: skip
    lab.apply({
        "kind": "BGPPeer", "metadata": {"name": "peer-with-rr"},
        "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
    })  # fmt: skip
    wait_until(lambda: a.established() == {c.ipv4, c.ipv6}, 30, "A peers with the RR")
    wait_until(lambda: b.established() == {c.ipv4, c.ipv6}, 30, "B peers with the RR")
    wait_until(lambda: _via(b, "198.19.0.0/26", a.ipv4), 20, "A's block reflected to B")
    wait_until(lambda: _via(b, "2001:db8:100::/122", a.ipv6), 20, "A's v6 block reflected")
    assert {p.peer_type for p in b.peers()} == {"node specific"}

    _check_node_status(a, {c.ipv4: "node specific", c.ipv6: "node specific"})


def _check_node_status(host: BgpHost, expected: dict[str, str]) -> None:
    """calicoctl node status against host A's run dir (felix.pid: this test process)."""
    (host.run_dir / "felix.pid").write_text(f"{os.getpid()}\n")
    env = {**os.environ, "CALICO_RUN_DIR": str(host.run_dir)}
    proc = programs.run([CALICOCTL, "node", "status"], env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("Calico process is running.\n")
    assert "IPv4 BGP status" in out and "IPv6 BGP status" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    table = {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}
    assert "PEER ADDRESS" in rows[0][0]
    for address, peer_type in expected.items():
        assert table[address][1] == peer_type
        assert table[address][2] == "up"
        assert table[address][4] == "Established"


def test_node_status_without_bird_and_without_felix(lab: BgpLab) -> None:
    run_dir = lab.hosts["a"].run_dir
    env = {**os.environ, "CALICO_RUN_DIR": str(run_dir)}
    (run_dir / "felix.pid").write_text("999999999\n")
    cmd = [CALICOCTL, "node", "status"]
    proc = programs.run(cmd, env=env, timeout=30)
    assert proc.returncode == 1 and proc.stderr.strip() == "Calico process is not running."
    (run_dir / "felix.pid").write_text(f"{os.getpid()}\n")
    proc = programs.run(cmd, env=env, timeout=30)
    assert proc.returncode == 0
    assert "None of the BGP backend processes (BIRD or GoBGP) are running." in proc.stdout
