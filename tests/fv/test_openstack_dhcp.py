"""OpenStack compute host: Felix (interface prefix "tap") and calico-dhcp-agent as processes in
a host namespace, etcd written as the Neutron driver writes it (translate's endpoints, subnet
data and security-group policy), VMs as namespaces behind tap veths whose `eth0` has the
port's MAC and no address until DHCP (busybox udhcpc) and SLAAC give it one.

Checks: each VM leases exactly its port's IPv4 address with the subnet's gateway as router,
its DNS server and its host name; it autoconfigures the EUI-64 address Neutron computed from
its MAC from dnsmasq's RAs (prefix off-link, default route via the host); two networks get two
dnsmasqs that do not answer each other's VMs; the security group lets ICMP and one TCP/UDP
port through and blocks another; port changes reload dnsmasq; a killed agent's dnsmasq is
adopted by its successor; SIGTERM stops dnsmasq and removes the ns- interfaces.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calico.model.endpoints import WorkloadEndpoint
from calico.openstack import keys, translate
from calico.openstack.dhcp.config import interface_name, network_files
from calico.openstack.dhcp.dnsmasq import dnsmasq_cmdline, owned_dnsmasq
from calico.testing.workloads import connects, ping, serve

from .conftest import Cluster, FelixHost, wait_until

pytestmark = pytest.mark.fv
AGENT = str(Path(sys.executable).parent / "calico-dhcp-agent")

NET1 = "5e1f0c2a-1111-4a2b-9c3d-000000000001"
NET2 = "6f2a1d3b-2222-4a2b-9c3d-000000000002"
SUB4 = "a0000000-0000-4000-8000-000000000004"
SUB6 = "a0000000-0000-4000-8000-000000000006"
SUB4_NET2 = "b0000000-0000-4000-8000-000000000004"
SG = "c0000000-0000-4000-8000-00000000005g"
PROJECT = "d0000000d0000000d0000000d0000000"

SUBNETS: dict[str, dict[str, Any]] = {
    SUB4: {
        "id": SUB4, "network_id": NET1, "ip_version": 4, "enable_dhcp": True,
        "cidr": "198.18.10.0/24", "gateway_ip": "198.18.10.1",
        "dns_nameservers": ["198.18.10.53"], "host_routes": [],
    },
    SUB6: {
        "id": SUB6, "network_id": NET1, "ip_version": 6, "enable_dhcp": True,
        "cidr": "2001:db8:10::/64", "gateway_ip": "2001:db8:10::1", "dns_nameservers": [],
        "host_routes": [], "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac",
    },
    SUB4_NET2: {
        "id": SUB4_NET2, "network_id": NET2, "ip_version": 4, "enable_dhcp": True,
        "cidr": "198.18.20.0/24", "gateway_ip": "198.18.20.1", "dns_nameservers": [],
        "host_routes": [],
    },
}  # fmt: skip


def sg_rule(rid: str, direction: str, ethertype: str, **fields: Any) -> dict[str, Any]:
    return {"id": rid, "security_group_id": SG, "direction": direction, "ethertype": ethertype,
            "protocol": None, "port_range_min": None, "port_range_max": None,
            "remote_group_id": None, "remote_ip_prefix": None, **fields}  # fmt: skip


# The default group's egress rules, ICMP from the group's members, and TCP/UDP port 5000.
SG_RULES = [
    sg_rule("r1", "egress", "IPv4"),
    sg_rule("r2", "egress", "IPv6"),
    sg_rule("r3", "ingress", "IPv4", protocol="icmp", remote_group_id=SG),
    sg_rule("r4", "ingress", "IPv6", protocol="ipv6-icmp", remote_group_id=SG),
    sg_rule("r5", "ingress", "IPv4", protocol="tcp", port_range_min=5000, port_range_max=5000),
    sg_rule("r6", "ingress", "IPv4", protocol="udp", port_range_min=5000, port_range_max=5000),
    sg_rule("r7", "ingress", "IPv6", protocol="tcp", port_range_min=5000, port_range_max=5000),
]


def eui64(prefix: str, mac: str) -> str:
    """The SLAAC address Neutron computes for a MAC (modified EUI-64, RFC 4291)."""
    octets = bytearray(int(b, 16) for b in mac.split(":"))
    octets[0] ^= 0x02
    iid = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    net = ipaddress.ip_network(prefix)
    return str(net.network_address + int.from_bytes(iid, "big"))


@dataclass
class VM:
    name: str
    netns: str
    port: dict[str, Any]

    @property
    def mac(self) -> str:
        return str(self.port["mac_address"])

    @property
    def tap(self) -> str:
        return keys.interface_name(self.port["id"])

    def ip(self, version: int) -> str:
        for fixed in self.port["fixed_ips"]:
            if ipaddress.ip_address(fixed["ip_address"]).version == version:
                return str(fixed["ip_address"])
        raise AssertionError(f"{self.name} has no IPv{version} address")


# udhcpc hands the lease to this script in the environment: record it, apply it with `ip`.
LEASE_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\ndns=%s\\nhostname=%s\\nlease=%s\\n' \\
      "$ip" "$mask" "$router" "$dns" "$hostname" "$lease" > "{out}"
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    ;;
esac
exit 0
"""


class Agent:
    """calico-dhcp-agent as a process in a host namespace."""

    def __init__(self, cluster: Cluster, host: FelixHost, run_dir: Path) -> None:
        self.cluster = cluster
        self.host = host
        self.run_dir = run_dir
        self.log = host.run_dir / "dhcp-agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._mark = 0

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NODENAME": self.host.node,
            "ETCD_ENDPOINTS": self.cluster.etcd.unix_endpoint,
            "CALICO_RUN_DIR": str(self.run_dir),
        }
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        self.proc = self.cluster.ns.popen(
            self.host.netns, [AGENT, "--debug"], env=env, log=str(self.log)
        )

    def output(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self._mark)
            return f.read().decode(errors="replace")

    def tail(self) -> str:
        return self.log.read_text()[-6000:] if self.log.exists() else "(no log)"

    def files(self, network_id: str) -> Any:
        return network_files(str(self.run_dir / "dhcp"), network_id)

    def dnsmasq_pid(self, network_id: str) -> int | None:
        found = owned_dnsmasq(self.files(network_id))
        return found[0] if found else None

    def hosts_file(self, network_id: str) -> str:
        path = Path(self.files(network_id).hosts)
        return path.read_text() if path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)  # the agent alone, not its dnsmasq children

    def kill_dnsmasqs(self) -> None:
        """Test clean-up: dnsmasqs outlive a SIGKILLed agent, so kill them by PID."""
        base = self.run_dir / "dhcp"
        for entry in base.iterdir() if base.is_dir() else ():
            pid = self.dnsmasq_pid(entry.name)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def agents(cluster: Cluster) -> Iterator[tuple[list[Agent], Path]]:
    """Started agents (killed, with their dnsmasqs, at the end) and a run directory for them.
    dnsmasq reads its files as user nobody, so that directory must be world-searchable, which
    pytest's tmp_path is not."""
    made: list[Agent] = []
    run_dir = Path(tempfile.mkdtemp(prefix="calico-dhcp-fv-"))
    run_dir.chmod(0o755)
    try:
        yield made, run_dir
    finally:
        for agent in made:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.signal(signal.SIGKILL)
                agent.proc.wait(timeout=10)
            print(f"--- dhcp agent log {agent.host.node} ---\n{agent.tail()}")
            agent.kill_dnsmasqs()
        shutil.rmtree(run_dir, ignore_errors=True)


def add_vm(
    cluster: Cluster,
    host: FelixHost,
    name: str,
    port_id: str,
    mac: str,
    fixed: list[tuple[str, str]],
    **port: Any,
) -> VM:
    """A VM namespace behind `tap<port_id[:11]>`, and its port's endpoint as the driver writes it."""
    netns = cluster.ns.add(f"{host.node}-{name}")
    tap = keys.interface_name(port_id)
    host.exec(
        [
            "ip",
            "link",
            "add",
            tap,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            mac,
            "netns",
            netns,
        ]
    )
    host.exec(["sysctl", "-qw", f"net.ipv6.conf.{tap}.accept_dad=0"])  # link-local at once
    cluster.ns.exec(netns, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
    host.exec(["ip", "link", "set", tap, "up"])
    cluster.ns.exec(netns, ["ip", "link", "set", "eth0", "up"])
    neutron_port = {
        "id": port_id, "device_owner": "compute:nova", "device_id": f"vm-{name}",
        "binding:host_id": host.node, "binding:vif_type": "tap", "mac_address": mac,
        "network_id": SUBNETS[fixed[0][0]]["network_id"], "project_id": PROJECT,
        "fixed_ips": [{"subnet_id": s, "ip_address": ip} for s, ip in fixed],
        "security_groups": [SG], **port,
    }  # fmt: skip
    vm = VM(name, netns, neutron_port)
    write_port(cluster, vm)
    return vm


def write_port(cluster: Cluster, vm: VM) -> None:
    extras = translate.PortExtras(subnets=SUBNETS, security_group_names={SG: "default"})
    cluster.client.apply(translate.endpoint_for_port(vm.port, extras, None))


def write_subnet(cluster: Cluster, subnet_id: str) -> None:
    data = translate.dhcp_subnet_data(SUBNETS[subnet_id])
    cluster.backend.put(keys.subnet_key("no-region", subnet_id), json.dumps(data).encode())


def dhcp(cluster: Cluster, vm: VM, tmp: Path) -> dict[str, str]:
    """Run udhcpc in the VM until it has a lease; the lease's fields."""
    out = tmp / f"{vm.name}.lease"
    script = tmp / f"{vm.name}.udhcpc"
    script.write_text(LEASE_SCRIPT.format(out=out))
    script.chmod(0o755)
    args = [
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-n",
        "-q",
        "-f",
        "-t",
        "5",
        "-T",
        "2",
        "-s",
        str(script),
    ]
    proc = cluster.ns.exec(vm.netns, args, check=False, timeout=60)
    assert proc.returncode == 0, f"udhcpc in {vm.name} failed:\n{proc.stdout}{proc.stderr}"
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def addresses(cluster: Cluster, vm: VM, version: int) -> list[str]:
    out = cluster.ns.exec(
        vm.netns, ["ip", "-j", f"-{version}", "addr", "show", "dev", "eth0"]
    ).stdout
    infos = json.loads(out)[0].get("addr_info", [])
    return [a["local"] for a in infos if a.get("scope") == "global"]


def test_dhcp_slaac_and_policy_for_vms(
    cluster: Cluster, agents: tuple[list[Agent], Path], tmp_path: Path
) -> None:
    host = cluster.host("h1", FELIX_INTERFACEPREFIX="tap")
    host.start()
    host.wait_ready()
    for subnet_id in SUBNETS:
        write_subnet(cluster, subnet_id)
    cluster.client.apply(
        translate.policy_for_security_group({"id": SG, "name": "default"}, SG_RULES, None)
    )
    mac_a, mac_b, mac_c = "fa:16:3e:00:10:05", "fa:16:3e:00:10:06", "fa:16:3e:00:20:05"
    slaac_a, slaac_b = (eui64("2001:db8:10::/64", m) for m in (mac_a, mac_b))
    a = add_vm(
        cluster, host, "vma", "1a2b3c4d-aaaa-4aaa-8aaa-00000000000a", mac_a,
        [(SUB4, "198.18.10.5"), (SUB6, slaac_a)], dns_assignment=[{"fqdn": "vm-a.example.org."}],
    )  # fmt: skip
    b = add_vm(
        cluster, host, "vmb", "2b3c4d5e-bbbb-4bbb-8bbb-00000000000b", mac_b,
        [(SUB4, "198.18.10.6"), (SUB6, slaac_b)],
    )  # fmt: skip
    c = add_vm(
        cluster, host, "vmc", "3c4d5e6f-cccc-4ccc-8ccc-00000000000c", mac_c, [(SUB4_NET2, "198.18.20.5")]
    )  # fmt: skip
    # Felix must know the taps before it lets DHCP in.
    for vm in (a, b, c):
        wait_until(
            lambda vm=vm: f"{vm.ip(4)} dev {vm.tap}" in host.routes(4), what=f"{vm.name} route"
        )

    agent = Agent(cluster, host, agents[1])
    agents[0].append(agent)
    agent.start()
    wait_until(lambda: agent.dnsmasq_pid(NET1) and agent.dnsmasq_pid(NET2), 20, "two dnsmasqs")

    # The ns- interfaces carry the gateways, without subnet routes.
    ns1 = host.exec(["ip", "-j", "addr", "show", "dev", interface_name(NET1)]).stdout
    assert {(i["local"], i["prefixlen"]) for i in json.loads(ns1)[0]["addr_info"] if i["scope"] == "global"} == {
        ("198.18.10.1", 24), ("2001:db8:10::1", 64)
    }  # fmt: skip
    assert "198.18.10.0/24" not in host.routes(4)

    lease_a = dhcp(cluster, a, tmp_path)
    assert (lease_a["ip"], lease_a["mask"], lease_a["router"]) == (
        "198.18.10.5",
        "24",
        "198.18.10.1",
    )
    assert (lease_a["dns"], lease_a["hostname"]) == ("198.18.10.53", "vm-a")
    lease_b = dhcp(cluster, b, tmp_path)
    assert (lease_b["ip"], lease_b["router"], lease_b["hostname"]) == (
        "198.18.10.6",
        "198.18.10.1",
        "host-198-18-10-6",
    )
    lease_c = dhcp(cluster, c, tmp_path)
    assert (lease_c["ip"], lease_c["mask"], lease_c["router"]) == (
        "198.18.20.5",
        "24",
        "198.18.20.1",
    )
    assert lease_c["dns"] == ""
    assert addresses(cluster, a, 4) == ["198.18.10.5"]
    assert addresses(cluster, c, 4) == ["198.18.20.5"]

    # SLAAC from dnsmasq's RAs: the address Neutron computed, the prefix off-link.
    for vm, slaac in ((a, slaac_a), (b, slaac_b)):
        wait_until(
            lambda vm=vm, slaac=slaac: addresses(cluster, vm, 6) == [slaac], 20, f"{vm.name} SLAAC"
        )
        routes6 = cluster.ns.exec(vm.netns, ["ip", "-6", "route", "show"]).stdout
        assert "default via fe80::" in routes6 and "2001:db8:10::/64" not in routes6
    assert addresses(cluster, c, 6) == []  # NET2 has no IPv6 subnet

    # The security group: ICMP from members, port 5000 only.
    assert ping(cluster.ns, a.netns, b.ip(4)) and ping(cluster.ns, b.netns, a.ip(4))
    assert ping(cluster.ns, a.netns, c.ip(4))
    assert ping(cluster.ns, a.netns, slaac_b)
    for port in (5000, 6000):
        serve(cluster.ns, b.netns, "0.0.0.0", port)
        serve(cluster.ns, b.netns, "::", port + 1)
    wait_until(lambda: connects(cluster.ns, a.netns, "tcp", b.ip(4), 5000), what="allowed TCP port")
    assert connects(cluster.ns, a.netns, "udp", b.ip(4), 5000)
    assert not connects(cluster.ns, a.netns, "tcp", b.ip(4), 6000)
    assert not connects(cluster.ns, a.netns, "udp", b.ip(4), 6000)
    assert not connects(cluster.ns, a.netns, "tcp", slaac_b, 6001)

    # A port change that keeps the taps (B gets a host name) is a SIGHUP, not a restart.
    pid1 = agent.dnsmasq_pid(NET1)
    b.port["dns_assignment"] = [{"fqdn": "vm-b.example.org."}]
    write_port(cluster, b)
    wait_until(lambda: ",vm-b,198.18.10.6" in agent.hosts_file(NET1), what="hosts file update")
    wait_until(lambda: "reloading dnsmasq" in agent.output(), what="the SIGHUP")
    assert agent.dnsmasq_pid(NET1) == pid1
    assert dhcp(cluster, b, tmp_path)["hostname"] == "vm-b"

    # The agent dies; its successor adopts the running dnsmasqs.
    agent.signal(signal.SIGKILL)
    assert agent.proc is not None
    agent.proc.wait(timeout=10)
    pids = (agent.dnsmasq_pid(NET1), agent.dnsmasq_pid(NET2))
    assert all(pids)
    agent.start()
    wait_until(
        lambda: "found dnsmasq" in agent.output() and "in sync" in agent.output(), what="adoption"
    )
    assert (agent.dnsmasq_pid(NET1), agent.dnsmasq_pid(NET2)) == pids
    assert dhcp(cluster, a, tmp_path)["ip"] == "198.18.10.5"

    # Port C goes: NET2's dnsmasq and interface go with it.
    cluster.delete(WorkloadEndpoint, keys.endpoint_name("h1", "vm-vmc", c.port["id"]), "openstack")
    wait_until(lambda: agent.dnsmasq_pid(NET2) is None, what="NET2's dnsmasq to stop")
    wait_until(
        lambda: interface_name(NET2) not in host.exec(["ip", "link"]).stdout, what="ns- removal"
    )

    # SIGTERM: dnsmasq stopped, interfaces removed, exit 0.
    agent.signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=20) == 0
    assert agent.dnsmasq_pid(NET1) is None
    # Adopted, so not the agent's child: whoever reaps orphans may leave a zombie for a while.
    assert pids[0] is not None and dnsmasq_cmdline(pids[0]) is None
    assert interface_name(NET1) not in host.exec(["ip", "link"]).stdout
