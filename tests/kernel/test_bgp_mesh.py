"""BGP end to end: BGPAgent + BIRD 2 per host namespace, hosts a, b, c on one bridge, real
etcd (the topology is tests/kernel/bgp_harness.py's). Host A has a workload whose /32 and /128 routes are
added with proto 80 on its cali interface, as Felix would, in its affine blocks; plus one
borrowed address from host B's block.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico import programs
from calico.ipam.keys import affinity_key
from calico.ipam.records import AffinityState, BlockAffinity
from calico.testing.netns import Namespaces
from calico.testing.workloads import add_workload

from .bgp_harness import BgpHost, BgpLab, bgp_lab, wait_until

pytestmark = pytest.mark.kernel
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
HOSTS = {"a": 1, "b": 2, "c": 3}
BLOCKS = {"a": ("198.19.0.0/26", "2001:db8:100::/122"), "b": ("198.19.0.64/26", None)}


@pytest.fixture
def lab(netns: Namespaces, tmp_path: Path) -> Iterator[BgpLab]:
    with bgp_lab(netns, tmp_path, HOSTS) as lab:
        yield lab


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
        host.start()
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
