"""A three-host, dual-stack, full-mesh lab with a border router (FRR) and an external client
behind it: BGP-only routing between hosts, workloads coming and going, policy enforced at both
ends, the border router's view, BIRD and node restarts, and IPAM under concurrent ADDs."""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from calico import programs
from calico.ipam.allocator import IPAMClient
from calico.lab import procs
from calico.lab.cni import NETWORK
from calico.lab.lab import Lab
from calico.lab.spec import Workload
from calico.model.network import Node
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy

from .conftest import apply, delete, eventually, lab_fixture, reaches, wait_until

LAB = """
name: e2emesh
fabric: {ipv4: 198.18.0.0/24, ipv6: "2001:db8:18::/64"}
pools:
  - {name: main-v4, cidr: 198.19.0.0/20}
  - {name: main-v6, cidr: "2001:db8:19::/112"}
  - {name: tiny, cidr: 198.19.64.0/26, assignmentMode: Manual}
hosts:
  - {name: host-1, ipv4: 198.18.0.11, ipv6: "2001:db8:18::11"}
  - {name: host-2, ipv4: 198.18.0.12, ipv6: "2001:db8:18::12"}
  - {name: host-3, ipv4: 198.18.0.13, ipv6: "2001:db8:18::13"}
workloads:
  - {name: a1, host: host-1, namespace: apps, labels: {app: a}, ports: [80, 8080]}
  - {name: b2, host: host-2, namespace: apps, labels: {app: b}, ports: [80, 8080]}
  - {name: c3, host: host-3, namespace: apps, labels: {app: c, expose: "true"}, ports: [80]}
border:
  {name: border, asNumber: 65000, ipv4: 198.18.0.1, ipv6: "2001:db8:18::1",
   network: {ipv4: 198.18.200.0/24, ipv6: "2001:db8:200::/64"}}
externals:
  - {name: client, behind: border, ipv4: 198.18.200.10, ipv6: "2001:db8:200::10"}
  - {name: lan, ipv4: 198.18.0.50, gateway: 198.18.0.11}
"""
WORKLOADS = ("a1", "b2", "c3")
CALICO = str(Path(sys.executable).parent / "calico")
HOST_IPS = {"host-1": "198.18.0.11", "host-2": "198.18.0.12", "host-3": "198.18.0.13"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from lab_fixture(LAB, tmp_path_factory.mktemp("mesh"))


def bird_routes(lab: Lab, host: str, version: int = 4) -> list[dict[str, Any]]:
    out = lab.exec(host, ["ip", f"-{version}", "-j", "route", "show", "proto", "bird"]).stdout
    return list(json.loads(out or "[]"))


def bgp_route_to(lab: Lab, host: str, address: str) -> dict[str, Any] | None:
    """The most specific `proto bird` route on `host` that covers `address` (not blackholes)."""
    ip = ipaddress.ip_address(address)
    found = [
        r for r in bird_routes(lab, host, ip.version)
        if r.get("gateway") and ip in ipaddress.ip_network(_dst(r["dst"], ip.version))
    ]  # fmt: skip
    return max(found, key=lambda r: ipaddress.ip_network(_dst(r["dst"], ip.version)).prefixlen,
               default=None)  # fmt: skip


def _dst(dst: str, version: int) -> str:
    return dst if "/" in dst else f"{dst}/{32 if version == 4 else 128}"


def test_nodes_register_their_autodetected_addresses(lab: Lab) -> None:
    for host, ip in HOST_IPS.items():
        node = lab.client.get(Node, host)
        assert node.spec.bgp is not None
        assert node.spec.bgp.ipv4Address == f"{ip}/24"
        assert node.spec.bgp.ipv6Address == f"2001:db8:18::{ip.rsplit('.', 1)[1]}/64"
    status = lab.exec("host-1", ["calicoctl", "node", "status"])
    assert status.returncode == 0, status.stderr
    for peer in ("198.18.0.12", "198.18.0.13", "198.18.0.1", "2001:db8:18::12"):
        line = next(ln for ln in status.stdout.splitlines() if f" {peer} " in ln)
        assert "Established" in line, status.stdout


def test_cli_works_from_another_invocation(lab: Lab) -> None:
    def calico_lab(*args: str) -> programs.CompletedProcess[str]:
        return programs.run([CALICO, "lab", "--state-dir", str(lab.dir), *args])

    status = json.loads(calico_lab("status", "--json").stdout)
    assert [h["name"] for h in status["hosts"]] == list(HOST_IPS)
    assert all(h["node"] and h["felix"] and h["bird"] for h in status["hosts"])
    assert all(s["info"] == "Established" for h in status["hosts"] for s in h["bgp"])
    probe = calico_lab("probe", "a1", "b2", "-6", "--json")
    assert probe.returncode == 0 and json.loads(probe.stdout)["address"].startswith("2001:db8:19:")
    blocked = calico_lab("probe", "a1", "b2", "--port", "9999", "--proto", "udp")
    assert blocked.returncode == 1 and "blocked" in blocked.stdout
    nodes = calico_lab("exec", "host-2", "--", "calicoctl", "get", "nodes")
    assert nodes.returncode == 0 and "host-3" in nodes.stdout
    unknown = calico_lab("probe", "a1", "nobody")
    assert unknown.returncode == 1 and "no machine of that name" in unknown.stderr


def test_lab_drift_is_clean_and_names_what_another_tool_changed(lab: Lab) -> None:
    def calico_lab(*args: str) -> programs.CompletedProcess[str]:
        return programs.run([CALICO, "lab", "--state-dir", str(lab.dir), *args], check=False)

    clean = calico_lab("drift")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.count("no drift") == len(HOST_IPS)
    all_pools = "cali40all-ipam-pools"
    lab.exec("host-2", ["ipset", "add", all_pools, "198.18.77.0/24"])
    try:
        drifted = calico_lab("drift", "--json")
        assert drifted.returncode == 1, drifted.stdout + drifted.stderr
        doc = json.loads(drifted.stdout)
        assert doc["host-1"] == {"drift": []} and doc["host-3"] == {"drift": []}
        assert doc["host-2"]["drift"] == [
            {"kind": "ipset", "subject": all_pools, "missing": [], "unexpected": ["198.18.77.0/24"]}
        ]
        one = calico_lab("drift", "host-2")
        assert one.returncode == 1 and f"ipset {all_pools}:\n    - 198.18.77.0/24" in one.stdout
    finally:
        lab.exec("host-2", ["ipset", "del", all_pools, "198.18.77.0/24"])
    assert calico_lab("drift", "nobody").returncode == 1  # not a host: refused


def test_cross_host_connectivity_uses_bgp_routes_only(lab: Lab) -> None:
    for name in WORKLOADS:
        ws = lab.state.workloads[name]
        for host in HOST_IPS:
            if host == ws.host:
                continue
            for address, owner_ip in ((ws.ipv4, HOST_IPS[ws.host]), (ws.ipv6, None)):
                assert address is not None
                route = bgp_route_to(lab, host, address)
                assert route is not None, f"{host} has no BIRD route to {name} {address}"
                if owner_ip:
                    assert route["gateway"] == owner_ip
    for src in WORKLOADS:
        for dst in WORKLOADS:
            if src != dst:
                assert reaches(lab, src, dst), f"{src} -> {dst} (IPv4)"
                assert reaches(lab, src, dst, ipv6=True), f"{src} -> {dst} (IPv6)"


def test_workload_added_later_is_reachable_everywhere_and_gone_after_delete(lab: Lab) -> None:
    late = lab.add_workload(Workload(name="late", host="host-1", namespace="apps", ports=[80]))
    # The ADD ran in host-1's calico node (its CNI service), not in the plugin's process.
    node_pid = (lab.run_dir("host-1") / "node.pid").read_text().strip()
    cni_log = (lab.dir / "cni" / "cni.log").read_text()
    assert f"calico-cni {node_pid} calico.cni.plugin: ADD " in cni_log
    try:
        lab.wait_routes(["late"])
        for src in ("b2", "c3"):
            eventually(lab, src, "late", True)
            eventually(lab, src, "late", True, ipv6=True)
    finally:
        lab.remove_workload("late")
    assert late.ipv4 is not None
    assert "cali" not in lab.exec("host-1", ["ip", "route", "get", late.ipv4]).stdout
    assert not reaches(lab, "b2", late.ipv4, port=80)


def test_borrowed_address_route_is_withdrawn_when_its_workload_goes(lab: Lab) -> None:
    """`tiny` has one block: host-1 takes it, host-2's workload borrows a /32 from it, which
    host-2 advertises on its own; deleting the workload withdraws that /32 over BGP."""
    lab.add_workload(Workload(name="t1", host="host-1", namespace="apps", ipPools=["tiny"]))
    try:
        t2 = lab.add_workload(Workload(name="t2", host="host-2", namespace="apps",
                                       ports=[80], ipPools=["tiny"]))  # fmt: skip
        assert t2.ipv4 is not None and ipaddress.ip_address(t2.ipv4) in ipaddress.ip_network(
            "198.19.64.0/26"
        )
        try:
            wait_until(lambda: (bgp_route_to(lab, "host-3", t2.ipv4 or "") or {}).get("gateway")
                       == HOST_IPS["host-2"], 20, "host-3 routes the borrowed /32 via host-2")  # fmt: skip
            eventually(lab, "c3", "t2", True)
        finally:
            lab.remove_workload("t2")
        wait_until(lambda: (bgp_route_to(lab, "host-3", t2.ipv4 or "") or {}).get("gateway")
                   != HOST_IPS["host-2"], 20, "the borrowed /32 withdrawn on host-3")  # fmt: skip
        assert not reaches(lab, "c3", t2.ipv4, port=80)
    finally:
        lab.remove_workload("t1")


POLICY_B_INGRESS = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-ingress, namespace: apps}
spec:
  selector: app == 'b'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'a'}, destination: {ports: [80]}}
"""
POLICY_A_EGRESS = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-egress, namespace: apps}
spec:
  selector: app == 'a'
  types: [Egress]
  egress:
  - {action: Allow, protocol: TCP, destination: {selector: app == 'c'}}
"""


def test_policy_enforced_at_receiver_ingress_and_sender_egress(lab: Lab) -> None:
    try:
        apply(lab, POLICY_B_INGRESS)
        eventually(lab, "c3", "b2", False)  # c3's egress is open: b2's ingress blocks it
        assert reaches(lab, "a1", "b2") and reaches(lab, "a1", "b2", ipv6=True)
        assert not reaches(lab, "a1", "b2", port=8080)
        assert not reaches(lab, "c3", "b2", ipv6=True)
        apply(lab, POLICY_A_EGRESS)
        eventually(lab, "a1", "b2", False)  # b2's ingress allows a: a1's egress blocks it
        assert not reaches(lab, "a1", "b2", ipv6=True)
        assert reaches(lab, "a1", "c3") and reaches(lab, "a1", "c3", ipv6=True)
        assert reaches(lab, "b2", "c3")  # untouched pairs unaffected
    finally:
        delete(lab, NetworkPolicy, "b-ingress", "apps")
        delete(lab, NetworkPolicy, "a-egress", "apps")
    eventually(lab, "a1", "b2", True)
    eventually(lab, "c3", "b2", True)


EXTERNAL_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: external-only-to-exposed}
spec:
  selector: expose != 'true'
  types: [Ingress]
  ingress:
  - {action: Deny, source: {nets: [198.18.200.0/24]}}
  - {action: Deny, source: {nets: ["2001:db8:200::/64"]}}
  - {action: Pass}
"""


def test_border_router_learns_every_block_and_external_reaches_what_policy_allows(
    lab: Lab,
) -> None:
    blocks = IPAMClient(lab.backend).blocks()
    assert blocks
    for block in blocks:
        owner = (block.affinity or "").removeprefix("host:")
        family = "ipv6" if ":" in block.cidr else "ipv4"

        def learned(cidr: str = block.cidr, fam: str = family, host: str = owner) -> bool:
            hops = lab.border_routes(fam).get(cidr)
            return hops is not None and (fam == "ipv6" or HOST_IPS.get(host) in hops)

        wait_until(learned, 20, f"the border router learns {block.cidr} from {owner}")
    for name in WORKLOADS:
        assert reaches(lab, "client", name) and reaches(lab, "client", name, ipv6=True)
    try:
        apply(lab, EXTERNAL_POLICY)
        eventually(lab, "client", "a1", False)
        for ipv6 in (False, True):
            assert reaches(lab, "client", "c3", ipv6=ipv6)
            assert not reaches(lab, "client", "a1", ipv6=ipv6)
            assert not reaches(lab, "client", "b2", ipv6=ipv6)
        assert reaches(lab, "a1", "b2")  # workload traffic is not affected
    finally:
        delete(lab, GlobalNetworkPolicy, "external-only-to-exposed")
    eventually(lab, "client", "a1", True)


def test_external_machine_on_the_fabric_reaches_workloads_through_its_gateway(lab: Lab) -> None:
    assert lab.addresses("lan") == ("198.18.0.50", None)
    for name in WORKLOADS:  # via host-1, then over BGP-learned routes to the owning host
        assert reaches(lab, "lan", name)
    assert reaches(lab, "lan", "host-2", proto="icmp")


def test_bird_restarted_routes_return(lab: Lab) -> None:
    killed = lab.kill_bird("host-2")
    for version in ("-4", "-6"):
        lab.exec("host-2", ["ip", version, "route", "flush", "proto", "bird"])
    wait_until(lambda: lab.sessions("host-2") != [] and all(s.established for s in lab.sessions("host-2")),
               30, "BIRD on host-2 restarted and peered again")  # fmt: skip
    assert (lab.run_dir("host-2") / "bird.pid").read_text().strip() != str(killed)
    lab.wait_routes()
    for dst in ("a1", "c3"):
        eventually(lab, "b2", dst, True)
        eventually(lab, "b2", dst, True, ipv6=True)


def test_node_restarted_routes_return(lab: Lab) -> None:
    c3 = lab.state.workloads["c3"]
    assert c3.ipv4 is not None
    run_dir = lab.run_dir("host-3")
    children = [procs.from_pid_file(run_dir / f) for f in ("felix.pid", "bird.pid")]
    assert all(procs.alive(p) for p in children)
    lab.stop_node("host-3")  # SIGTERM: the node stops BIRD and Felix and removes their files
    assert not any(procs.alive(p) for p in children)
    assert not any((run_dir / f).exists() for f in ("felix.pid", "bird.pid", "bird.ctl"))
    wait_until(lambda: bgp_route_to(lab, "host-1", c3.ipv4 or "") is None, 20,
               "host-3's routes withdrawn when its node stops")  # fmt: skip
    lab.start_node("host-3")
    lab.wait_nodes_ready(["host-3"])
    lab.wait_bgp(list(HOST_IPS))
    lab.wait_routes()
    for src in ("a1", "b2", "client"):
        eventually(lab, src, "c3", True)
        eventually(lab, src, "c3", True, ipv6=True)


def test_no_address_is_handed_out_twice(lab: Lab) -> None:
    extra = [Workload(name=f"p{i}", host=f"host-{i % 3 + 1}", namespace="apps") for i in range(9)]
    with ThreadPoolExecutor(6) as pool:
        added = list(pool.map(lab.add_workload, extra))
    try:
        everything = list(lab.state.workloads.values())
        for attr in ("ipv4", "ipv6"):
            addresses = [getattr(w, attr) for w in everything]
            assert None not in addresses
            assert len(set(addresses)) == len(addresses), addresses
        ipam = IPAMClient(lab.backend)
        for ws in everything:
            for address in (ws.ipv4, ws.ipv6):
                allocation = ipam.allocation_of(address or "")
                assert (
                    allocation is not None
                    and allocation.handle_id == f"{NETWORK}.{ws.container_id}"
                )
        lab.wait_routes([w.name for w in added])
    finally:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lab.remove_workload, [w.name for w in extra]))
    ipam = IPAMClient(lab.backend)
    assert all(ipam.allocation_of(w.ipv4 or "") is None for w in added)
