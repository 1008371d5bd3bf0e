"""Floating IPs as an OpenStack operator uses them: a WorkloadEndpoint's `spec.ipNATs` maps an
address from a separate "floating" pool to the workload. Felix DNATs it (cali-fip-dnat) and
routes the /32 to the workload's interface; BIRD learns that kernel route and advertises it
to the mesh and to the border router, so an external client behind the border reaches the
workload through the floating IP, with its own source address intact. Removing the mapping
withdraws the route everywhere."""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator

import pytest

from calico import programs
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AddressNotInPool
from calico.lab.lab import Lab
from calico.model.endpoints import IPNAT

from .conftest import eventually, lab_fixture, reaches, set_nats, wait_until

FLOATING_POOL = "198.19.200.0/24"
FLOATING_IP = "198.19.200.10"
CLIENT_IP = "198.18.200.10"
HOST_IPS = {"host-1": "198.18.0.11", "host-2": "198.18.0.12"}
PEER_PORT = 8081  # a one-shot listener that reports the peer's address (the echo one cannot)

LAB = """
name: e2efip
fabric: {ipv4: 198.18.0.0/24}
pools:
  - {name: main-v4, cidr: 198.19.0.0/20}
hosts:
  - {name: host-1, ipv4: 198.18.0.11}
  - {name: host-2, ipv4: 198.18.0.12}
workloads:
  - {name: vm1, host: host-1, namespace: tenant, ports: [80]}
  - {name: vm2, host: host-2, namespace: tenant, ports: [80]}
border:
  {name: border, asNumber: 65000, ipv4: 198.18.0.1, network: {ipv4: 198.18.200.0/24}}
externals:
  - {name: client, behind: border, ipv4: 198.18.200.10}
resources: [floating.yaml]
"""

# The floating pool is `disabled: true`: IPAM never hands out its addresses, but it is still an
# IP pool, and the BGP export filter (calico.bgp.render `_export_filter`) only rejects pools
# with `disableBGPExport`: a disabled pool keeps its `if ( net ~ <cidr> ) then { accept; }`, as
# in Calico's bird_ipam template (see tests/golden/bgp/pools-export). Without a pool covering
# it, the floating /32 would not be exported at all. Felix programs NAT mappings only with
# FloatingIPs Enabled (always for orchestrator "openstack"; the lab's CNI endpoints are k8s),
# set before the nodes start so Felix need not restart.
RESOURCES = f"""
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: floating}}
spec: {{cidr: {FLOATING_POOL}, disabled: true}}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec: {{floatingIPs: Enabled}}
"""

PEER_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(20)
print("listening", flush=True)
conn, peer = s.accept(); conn.sendall(b"ok"); conn.close()
print(peer[0], flush=True)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("fip")
    (tmp / "floating.yaml").write_text(RESOURCES)
    yield from lab_fixture(LAB, tmp)


def host_route(lab: Lab, host: str, cidr: str, proto: str | None = None) -> dict[str, str] | None:
    argv = ["ip", "-4", "-j", "route", "show", "exact", cidr, *(["proto", proto] if proto else [])]
    routes = json.loads(lab.exec(host, argv).stdout or "[]")
    return routes[0] if routes else None


def border_hops(lab: Lab) -> list[str] | None:
    return lab.border_routes("ipv4").get(f"{FLOATING_IP}/32")


def fip_dnats(lab: Lab, host: str) -> list[tuple[str, str]]:
    """(external, internal) of host's cali-fip-dnat rules, whichever iptables backend Felix
    picked."""
    found = []
    for backend in ("nft", "legacy"):
        for line in lab.exec(host, [f"iptables-{backend}-save", "-t", "nat"]).stdout.splitlines():
            words = line.split()
            if words[:2] == ["-A", "cali-fip-dnat"] and "DNAT" in words:
                dst = words[words.index("-d") + 1].removesuffix("/32")
                found.append((dst, words[words.index("--to-destination") + 1]))
    return found


def test_floating_pool_is_advertised_but_never_allocated(lab: Lab) -> None:
    floating = ipaddress.ip_network(FLOATING_POOL)
    for name in ("vm1", "vm2"):
        address = lab.state.workloads[name].ipv4
        assert address is not None and ipaddress.ip_address(address) not in floating
    ipam = IPAMClient(lab.backend)
    assert not any(ipaddress.ip_network(b.cidr).overlaps(floating) for b in ipam.blocks())
    with pytest.raises(AddressNotInPool):  # not even when asked for by address
        ipam.assign_ip(FLOATING_IP, "floating-ip-test", "host-1")
    bird_cfg = (lab.run_dir("host-1") / "bird.cfg").read_text()
    assert f"if ( net ~ {FLOATING_POOL} ) then {{ accept; }}" in bird_cfg
    assert f"Skip {FLOATING_POOL}" not in bird_cfg
    # Nothing maps the floating IP yet: no route anywhere, the client cannot reach it.
    assert host_route(lab, "host-1", f"{FLOATING_IP}/32") is None
    assert border_hops(lab) is None
    assert not reaches(lab, "client", FLOATING_IP, port=80)


def test_floating_ip_routes_and_nats_to_the_workload_until_removed(lab: Lab) -> None:
    vm1 = lab.state.workloads["vm1"]
    assert vm1.ipv4 is not None
    wep = set_nats(lab, "vm1", [IPNAT(internalIP=vm1.ipv4, externalIP=FLOATING_IP)])
    iface = wep.spec.interfaceName
    assert iface and iface.startswith("cali")
    try:
        # host-1: Felix's /32 to the workload's veth, and the DNAT.
        wait_until(lambda: (host_route(lab, "host-1", f"{FLOATING_IP}/32") or {}).get("dev")
                   == iface, 15, f"host-1 routes {FLOATING_IP}/32 to {iface}")  # fmt: skip
        wait_until(lambda: fip_dnats(lab, "host-1") == [(FLOATING_IP, vm1.ipv4)], 10,
                   f"host-1 DNATs {FLOATING_IP} to {vm1.ipv4}")  # fmt: skip
        # BGP: the border router and host-2 learn it from host-1.
        wait_until(lambda: HOST_IPS["host-1"] in (border_hops(lab) or []), 20,
                   f"the border router learns {FLOATING_IP}/32 from host-1")  # fmt: skip
        wait_until(lambda: (host_route(lab, "host-2", f"{FLOATING_IP}/32", "bird") or {})
                   .get("gateway") == HOST_IPS["host-1"], 20,
                   f"host-2 learns {FLOATING_IP}/32 via host-1")  # fmt: skip
        # Real packets: the external client, another host's workload and the workload itself
        # (hairpin SNAT) connect through the floating IP.
        eventually(lab, "client", FLOATING_IP, True, port=80)
        assert reaches(lab, "vm2", FLOATING_IP, port=80)
        assert reaches(lab, "vm1", FLOATING_IP, port=80)
        # The workload sees the client's own address (DNAT only, no SNAT on the way in).
        assert peer_seen_by(lab, "vm1", "client", FLOATING_IP) == CLIENT_IP
    finally:
        set_nats(lab, "vm1", None)
    wait_until(lambda: host_route(lab, "host-1", f"{FLOATING_IP}/32") is None, 15,
               f"host-1's route to {FLOATING_IP} removed")  # fmt: skip
    wait_until(lambda: border_hops(lab) is None, 20, f"{FLOATING_IP}/32 withdrawn at the border")
    wait_until(lambda: host_route(lab, "host-2", f"{FLOATING_IP}/32") is None, 20,
               f"{FLOATING_IP}/32 withdrawn on host-2")  # fmt: skip
    wait_until(lambda: fip_dnats(lab, "host-1") == [], 10, f"host-1's DNAT of {FLOATING_IP} gone")
    assert not reaches(lab, "client", FLOATING_IP, port=80)
    assert not reaches(lab, "vm2", FLOATING_IP, port=80)
    assert reaches(lab, "client", "vm1")  # the workload itself is still reachable


def peer_seen_by(lab: Lab, server: str, client: str, address: str) -> str:
    """Connect from `client` to `address`:PEER_PORT, answered by a one-shot listener in
    `server`; returns the source address the listener saw."""
    argv = lab.exec_argv(server, [sys.executable, "-c", PEER_SERVER, str(PEER_PORT)])
    proc = programs.start(argv, stdout=programs.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        assert lab.probe(client, address, port=PEER_PORT, timeout=2.0).ok
        out, _ = proc.communicate(timeout=10)
        return out.strip()
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its PID
            proc.wait()
