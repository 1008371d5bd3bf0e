"""Policy, host endpoints, borrowed addresses and floating IPs over VXLAN (CrossSubnet).

One small lab: rack a (host-a1, host-a2) and rack b (host-b1) behind a plain router, calico
node with the vxlan backend, an external `ext` in a third subnet. w-a1 -> w-b1 crosses the
router inside VXLAN; w-a1 -> w-a2 goes natively. Policies enforce both ways at both ends, in
IPv4 and IPv6, whichever path the packets take. Host endpoints on every host's eth0 with
nothing but failsafes (and neighbour discovery) leave workload traffic working: Felix accepts
VXLAN between the cluster's hosts before host endpoint policy, as Calico does, and an
applyOnForward policy on eth0 polices only the flows forwarded through eth0. A workload's
address borrowed from another host's block, and a floating IP from a VXLAN pool, are routed
as a /32 (/128) to the endpoint's host: through its VTEP from the other rack, natively from
its own, so they are reachable from everywhere.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from calico import programs
from calico.lab.lab import Lab
from calico.lab.spec import Workload
from calico.model.endpoints import IPNAT, HostEndpoint
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy
from calico.model.vxlan import device_name

from .conftest import apply, delete, eventually, lab_fixture, reaches, set_nats, wait_until

LAB = """
name: e2evxpol
networkingBackend: vxlan
router: {name: router}
pools:
  - {name: main-v4, cidr: 198.19.0.0/20, blockSize: 26, vxlanMode: CrossSubnet, natOutgoing: true}
  - {name: main-v6, cidr: "2001:db8:100::/112", blockSize: 122, vxlanMode: CrossSubnet,
     natOutgoing: true}
  - {name: tiny, cidr: 198.19.64.0/26, blockSize: 26, vxlanMode: CrossSubnet,
     assignmentMode: Manual}
racks:
  - {name: rack-a, subnet: 198.18.1.0/24, ipv6: "2001:db8:1::/64"}
  - {name: rack-b, subnet: 198.18.2.0/24, ipv6: "2001:db8:2::/64"}
  - {name: outside, subnet: 198.18.3.0/24, ipv6: "2001:db8:3::/64"}
hosts:
  - {name: host-a1, rack: rack-a, ipv4: 198.18.1.11, ipv6: "2001:db8:1::11"}
  - {name: host-a2, rack: rack-a, ipv4: 198.18.1.12, ipv6: "2001:db8:1::12"}
  - {name: host-b1, rack: rack-b, ipv4: 198.18.2.11, ipv6: "2001:db8:2::11"}
workloads:
  - {name: w-a1, host: host-a1, namespace: apps, labels: {rack: a, role: client}, ports: [80]}
  - {name: w-a2, host: host-a2, namespace: apps, labels: {rack: a, role: server}, ports: [80]}
  - {name: w-b1, host: host-b1, namespace: apps, labels: {rack: b, role: server}, ports: [80]}
externals:
  - {name: ext, ipv4: 198.18.3.10, ipv6: "2001:db8:3::10"}
resources: [floating.yaml]
"""
HOST_IP = {"host-a1": ("198.18.1.11", "2001:db8:1::11"), "host-a2": ("198.18.1.12", "2001:db8:1::12"),
           "host-b1": ("198.18.2.11", "2001:db8:2::11")}  # fmt: skip
# A floating range per family: disabled (IPAM never hands its addresses out) and in
# vxlanMode CrossSubnet, which is what makes Felix route its addresses over the tunnel.
FLOATING = {4: ("198.19.200.0/24", "198.19.200.10"), 6: ("2001:db8:200::/112", "2001:db8:200::10")}
RESOURCES = (
    "\n---\n".join(
        f"""apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: floating-v{version}}}
spec: {{cidr: "{cidr}", disabled: true, vxlanMode: CrossSubnet}}"""
        for version, (cidr, _) in FLOATING.items()
    )
    + """
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {floatingIPs: Enabled}
"""
)
HOST_PORT = 8080  # a listener on host-b1, outside the failsafe ports


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("vxpol")
    (tmp / "floating.yaml").write_text(RESOURCES)
    yield from lab_fixture(LAB, tmp)


def both(lab: Lab, src: str, dst: str, expect: bool) -> None:
    """`src` -> `dst` on TCP/80 is `expect` in IPv4 and IPv6 (waiting for policy to apply)."""
    for ipv6 in (False, True):
        eventually(lab, src, dst, expect, ipv6=ipv6)


def vxlan_packets(lab: Lab) -> int:
    return lab.vxlan_counts().routed


def routes(lab: Lab, host: str, dst: str) -> list[dict[str, Any]]:
    version = ipaddress.ip_network(dst).version
    out = lab.exec(host, ["ip", f"-{version}", "-j", "route", "show", "exact", dst]).stdout
    return list(json.loads(out or "[]"))


def tunnel_address(lab: Lab, host: str, version: int) -> str:
    out = lab.exec(host, ["ip", f"-{version}", "-j", "addr", "show", "dev", device_name(version)])
    infos = [a for link in json.loads(out.stdout or "[]") for a in link.get("addr_info", [])]
    return next(str(a["local"]) for a in infos if a.get("scope") == "global")


def routed_via(lab: Lab, host: str, dst: str, owner: str) -> bool:
    """`host` routes `dst` as CrossSubnet wants for `owner`'s endpoint: natively within the
    owner's rack, through the owner's VTEP from another."""
    version = ipaddress.ip_network(dst).version
    same_rack = lab.spec.host(host).rack == lab.spec.host(owner).rack
    gateway = HOST_IP[owner][version == 6] if same_rack else tunnel_address(lab, owner, version)
    device = "eth0" if same_rack else device_name(version)
    found = [(r.get("gateway"), r.get("dev")) for r in routes(lab, host, dst)]
    return found == [(gateway, device)]


# -- policy ------------------------------------------------------------------------------------

INGRESS = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: servers-in, namespace: apps}}
spec:
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - {{action: Allow, protocol: TCP, source: {{selector: rack == '{rack}'}}}}
"""
EGRESS = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: clients-out}}
spec:
  selector: role == 'client'
  types: [Egress]
  egress:
  - {{action: Allow, protocol: TCP, destination: {{selector: rack == '{rack}'}}}}
"""


def test_ingress_policy_on_the_receiver_over_the_tunnel_and_natively(lab: Lab) -> None:
    """Allow from rack a: w-a1 -> w-a2 (native) and w-a1 -> w-b1 (VXLAN) pass, w-b1 -> w-a2
    (VXLAN) is dropped by w-a2's ingress; allowing rack b instead turns each one round."""
    try:
        apply(lab, INGRESS.format(rack="a"))
        both(lab, "w-b1", "w-a2", False)
        before = vxlan_packets(lab)
        both(lab, "w-a1", "w-b1", True)
        assert vxlan_packets(lab) > before  # that flow did cross the router encapsulated
        both(lab, "w-a1", "w-a2", True)
        apply(lab, INGRESS.format(rack="b"))
        both(lab, "w-a1", "w-a2", False)
        both(lab, "w-a1", "w-b1", False)
        both(lab, "w-b1", "w-a2", True)
    finally:
        delete(lab, NetworkPolicy, "servers-in", "apps")
    both(lab, "w-a1", "w-b1", True)


def test_egress_policy_on_the_sender_over_the_tunnel_and_natively(lab: Lab) -> None:
    """w-a1 may only send to rack a, then only to rack b; the receivers allow everything."""
    try:
        apply(lab, EGRESS.format(rack="a"))
        both(lab, "w-a1", "w-b1", False)
        both(lab, "w-a1", "w-a2", True)
        apply(lab, EGRESS.format(rack="b"))
        both(lab, "w-a1", "w-a2", False)
        both(lab, "w-a1", "w-b1", True)
        both(lab, "w-b1", "w-a2", True)  # not selected: untouched
    finally:
        delete(lab, GlobalNetworkPolicy, "clients-out")
    both(lab, "w-a1", "w-a2", True)


# -- host endpoints ----------------------------------------------------------------------------

HEP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: {host}-eth0, labels: {{hep: eth0}}}}
spec: {{node: {host}, interfaceName: eth0, expectedIPs: ["{v4}", "{v6}"]}}
"""
# Like Go Felix, host endpoint policy does not exempt IPv6 neighbour discovery: an operator
# allows it, or the hosts lose their IPv6 neighbours (and IPv6 VXLAN with them).
NDP = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: hosts-ndp}
spec:
  selector: hep == 'eth0'
  ingress: [{action: Allow, protocol: ICMPv6}]
  egress: [{action: Allow, protocol: ICMPv6}]
"""
HOST_PORT_POLICY = f"""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: hosts-port}}
spec:
  selector: hep == 'eth0'
  types: [Ingress]
  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [{HOST_PORT}]}}}}]
"""

# Calico: an applyOnForward policy on a host endpoint also polices what the host forwards
# between that interface and its workloads. Over VXLAN, a cross-subnet flow reaches the host
# as UDP to the host itself (accepted from the cluster's VTEPs before host endpoint policy)
# and is forwarded from vxlan.calico, which is no host endpoint: only the native (same
# subnet) flow comes in through eth0.
FORWARD_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: hosts-forward}
spec:
  selector: hep == 'eth0'
  applyOnForward: true
  types: [Ingress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [80]}}
  - {action: Allow}
"""


def test_host_endpoints_leave_vxlan_working_and_still_police_the_host(lab: Lab) -> None:
    """Only failsafes (and neighbour discovery): the host port is shut, workloads still
    talk over the tunnel and natively; a policy opens the port; applyOnForward polices the
    native flow only."""
    argv = lab.exec_argv("host-b1", [sys.executable, "-m", "calico.lab.echo", f"tcp/{HOST_PORT}"])
    listener = programs.start(argv)
    try:
        eventually(lab, "ext", "host-b1", True, port=HOST_PORT)
        try:
            apply(lab, NDP)
            for host, (v4, v6) in HOST_IP.items():
                apply(lab, HEP.format(host=host, v4=v4, v6=v6))
            eventually(lab, "ext", "host-b1", False, port=HOST_PORT)
            before = vxlan_packets(lab)
            for src, dst in (("w-a1", "w-b1"), ("w-b1", "w-a2"), ("w-a1", "w-a2")):
                both(lab, src, dst, True)
            assert vxlan_packets(lab) > before
            assert reaches(lab, "w-a1", "ext", proto="icmp")  # natOutgoing, forwarded
            assert not reaches(lab, "w-a1", "host-b1", port=HOST_PORT)
            apply(lab, HOST_PORT_POLICY)
            eventually(lab, "ext", "host-b1", True, port=HOST_PORT)
            eventually(lab, "ext", "host-b1", True, port=HOST_PORT, ipv6=True)
            assert not reaches(lab, "ext", "host-b1", port=HOST_PORT + 1)
            both(lab, "w-a1", "w-b1", True)
            apply(lab, FORWARD_POLICY)
            both(lab, "w-a1", "w-a2", False)  # native: forwarded in from eth0
            both(lab, "w-a1", "w-b1", True)  # tunnelled: forwarded in from vxlan.calico
        finally:
            for host in HOST_IP:
                delete(lab, HostEndpoint, f"{host}-eth0")
            delete(lab, GlobalNetworkPolicy, "hosts-forward")
            delete(lab, GlobalNetworkPolicy, "hosts-port")
            delete(lab, GlobalNetworkPolicy, "hosts-ndp")
    finally:
        listener.kill()  # our own child, by its PID
        listener.wait()


# -- addresses outside their host's blocks -----------------------------------------------------


def test_a_borrowed_address_is_routed_to_its_host(lab: Lab) -> None:
    """`tiny` has one block: host-b1 takes it, host-a2's workload borrows from it. Without a
    /32 for the borrowed address, every host would send it to host-b1, which blackholes the
    rest of its block. With it, host-a1 routes it natively (same subnet) and host-b1 through
    host-a2's VTEP."""
    lab.add_workload(Workload(name="t1", host="host-b1", namespace="apps", ipPools=["tiny"]))
    try:
        t2 = lab.add_workload(Workload(name="t2", host="host-a2", namespace="apps", ports=[80],
                                       ipPools=["tiny"]))  # fmt: skip
        assert t2.ipv4 is not None
        dst = f"{t2.ipv4}/32"
        try:
            for host in ("host-a1", "host-b1"):
                wait_until(lambda h=host: routed_via(lab, h, dst, "host-a2"), 10,  # type: ignore[misc]
                           f"{host} routes {dst} to host-a2")  # fmt: skip
            for src in ("w-a1", "w-b1", "t1"):
                eventually(lab, src, "t2", True)
        finally:
            lab.remove_workload("t2")
        wait_until(lambda: routes(lab, "host-b1", dst) == [], 10, f"{dst} withdrawn")
    finally:
        lab.remove_workload("t1")


def test_floating_ips_are_reachable_over_the_tunnel(lab: Lab) -> None:
    """w-b1's floating IPs: host-b1 DNATs them; the other rack routes each /32 (/128) through
    host-b1's VTEP; the external reaches them once its router sends the floating range to a
    cluster host (there is no BGP to tell it), host-a1, which has to tunnel them on."""
    ws = lab.state.workloads["w-b1"]
    assert ws.ipv4 is not None and ws.ipv6 is not None
    nats = [IPNAT(internalIP=ws.ipv4, externalIP=FLOATING[4][1]),
            IPNAT(internalIP=ws.ipv6, externalIP=FLOATING[6][1])]  # fmt: skip
    router_routes = [(v, cidr, HOST_IP["host-a1"][v == 6]) for v, (cidr, _) in FLOATING.items()]
    set_nats(lab, "w-b1", nats)
    try:
        for version, (_, fip) in FLOATING.items():
            dst = f"{fip}/{32 if version == 4 else 128}"
            for host in ("host-a1", "host-a2"):
                wait_until(lambda h=host, d=dst: routed_via(lab, h, d, "host-b1"), 10,  # type: ignore[misc]
                           f"{host} routes {dst} through host-b1's VTEP")  # fmt: skip
        for version, cidr, via in router_routes:
            lab.exec("router", ["ip", f"-{version}", "route", "replace", cidr, "via", via])
        for _, fip in FLOATING.values():
            for src in ("w-a1", "w-a2", "host-a2"):
                eventually(lab, src, fip, True, port=80)
            before = vxlan_packets(lab)  # ext -> router -> host-a1, then tunnelled to host-b1
            eventually(lab, "ext", fip, True, port=80)
            assert vxlan_packets(lab) > before
    finally:
        for version, cidr, via in router_routes:
            lab.exec("router", ["ip", f"-{version}", "route", "del", cidr, "via", via])
        set_nats(lab, "w-b1", None)
    for version, (_, fip) in FLOATING.items():
        dst = f"{fip}/{32 if version == 4 else 128}"
        wait_until(lambda d=dst: routes(lab, "host-a1", d) == [], 10, f"{dst} withdrawn")  # type: ignore[misc]
        assert not reaches(lab, "w-a1", fip, port=80)
