"""OpenStack compute host: Felix (interface prefix "tap") and calico-dhcp-agent as processes in
a host namespace, etcd written as the Neutron driver writes it (translate's endpoints, subnet
data and security-group policy), VMs as namespaces behind tap veths whose `eth0` has the
port's MAC and no address until DHCP (busybox udhcpc) and SLAAC give it one.

Checks: each VM leases exactly its port's IPv4 address with the subnet's gateway as router,
its DNS server, its host name, its tap's MTU (following a change), and the lease time and
domain of the agent's `[DEFAULT] dhcp_lease_duration`/`dns_domain`; an allowed address pair
is not leased but routed to its VM, usable as a source and a member of the security group;
each VM autoconfigures the EUI-64 address Neutron computed from its MAC from dnsmasq's RAs
(prefix off-link, default route via the host); two networks get two
dnsmasqs that do not answer each other's VMs; the security group lets ICMP and one TCP/UDP
port through and blocks another; port changes reload dnsmasq; a killed agent's dnsmasq is
adopted by its successor; SIGTERM stops dnsmasq and removes the ns- interfaces.
On IPv6-only networks (ISC `dhclient -6` in the VMs, its script applying addresses inside
the VM's namespace only): a dhcpv6-stateful VM leases exactly its port's address and DNS
server and gets no other address, its default route from the RA via the host's link-local on
its tap; a dhcpv6-stateless VM autoconfigures its EUI-64 address and gets the DNS server by
Information-request; the security group applies to those addresses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calico import programs
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
NET3 = "7a3b2e4c-3333-4a2b-9c3d-000000000003"
NET4 = "8b4c3f5d-4444-4a2b-9c3d-000000000004"
SUB4 = "a0000000-0000-4000-8000-000000000004"
SUB6 = "a0000000-0000-4000-8000-000000000006"
SUB4_NET2 = "b0000000-0000-4000-8000-000000000004"
SUB6_STATEFUL = "e0000000-0000-4000-8000-000000000063"
SUB6_STATELESS = "f0000000-0000-4000-8000-000000000064"
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
    SUB6_STATEFUL: {
        "id": SUB6_STATEFUL, "network_id": NET3, "ip_version": 6, "enable_dhcp": True,
        "cidr": "2001:db8:30::/64", "gateway_ip": "2001:db8:30::1",
        "dns_nameservers": ["2001:db8:30::53"], "host_routes": [],
        "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful",
    },
    SUB6_STATELESS: {
        "id": SUB6_STATELESS, "network_id": NET4, "ip_version": 6, "enable_dhcp": True,
        "cidr": "2001:db8:40::/64", "gateway_ip": "2001:db8:40::1",
        "dns_nameservers": ["2001:db8:40::53"], "host_routes": [],
        "ipv6_ra_mode": "dhcpv6-stateless", "ipv6_address_mode": "dhcpv6-stateless",
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
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\ndns=%s\\nhostname=%s\\nlease=%s\\nmtu=%s\\ndomain=%s\\n' \\
      "$ip" "$mask" "$router" "$dns" "$hostname" "$lease" "$mtu" "$domain" > "{out}"
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    ;;
esac
exit 0
"""


class Agent:
    """calico-dhcp-agent as a process in a host namespace."""

    def __init__(
        self, cluster: Cluster, host: FelixHost, run_dir: Path, config_file: Path | None = None
    ) -> None:
        self.cluster = cluster
        self.config_file = config_file
        self.host = host
        self.run_dir = run_dir
        self.log = host.run_dir / "dhcp-agent.log"
        self.proc: programs.Popen[bytes] | None = None
        self._mark = 0

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NODENAME": self.host.node,
            "ETCD_ENDPOINTS": self.cluster.etcd.unix_endpoint,
            "CALICO_RUN_DIR": str(self.run_dir),
        }
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        args = [AGENT, "--debug"]
        if self.config_file is not None:
            args += ["--config-file", str(self.config_file)]
        self.proc = self.cluster.ns.popen(self.host.netns, args, env=env, log=str(self.log))

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
        "-O",
        "mtu",
        "-s",
        str(script),
    ]
    proc = cluster.ns.exec(vm.netns, args, check=False, timeout=60)
    assert proc.returncode == 0, f"udhcpc in {vm.name} failed:\n{proc.stdout}{proc.stderr}"
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


# DUID type 4 (RFC 6355) and a UUID.
DUID_UUID = "00:04:" + ":".join(
    f"{b:02x}" for b in bytes.fromhex("5e6f7081bbbb4bbb8bbb00000000003b")
)

# dhclient -6 hands its reply to this script in the environment: record it, and apply a
# leased address inside the VM's namespace. Nothing else (no resolv.conf, no routes: the
# default route comes from the RA).
DHCLIENT6_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND6|RENEW6|REBIND6|REBOOT6|INFORM6) ;;
  *) exit 0 ;;
esac
if [ -n "$new_ip6_address" ]; then
  ip -6 addr replace "$new_ip6_address/128" dev "$interface" nodad || exit 1
fi
printf 'reason=%s\\naddress=%s\\nprefixlen=%s\\ndns=%s\\n' \\
  "$reason" "$new_ip6_address" "$new_ip6_prefixlen" "$new_dhcp6_name_servers" > "{out}.new"
mv "{out}.new" "{out}"
exit 0
"""


def dhcp6(
    cluster: Cluster, vm: VM, tmp: Path, inform: bool = False, duid: str | None = None
) -> dict[str, str]:
    """Run `dhclient -6` in the VM (`inform`: -S, an Information-request only) until its
    script has the reply; the reply's fields. dhclient stays up to renew, so it runs in the
    foreground under the test's Namespaces and is killed here, by PID. Its DUID is DUID-LL
    (the port's MAC) unless `duid` (hex) replaces it; config, lease and PID files are the
    test's own."""
    work = tmp / f"{vm.name}-dhclient6"
    work.mkdir(exist_ok=True)
    out = work / "reply"
    out.unlink(missing_ok=True)
    script = work / "script"
    script.write_text(DHCLIENT6_SCRIPT.format(out=out))
    script.chmod(0o755)
    conf = work / "dhclient.conf"
    conf.write_text(
        "request dhcp6.name-servers;\n" + (f"send dhcp6.client-id {duid};\n" if duid else "")
    )
    log = work / "log"
    args = ["dhclient", "-6", "-d", "-v", "-D", "LL", "-cf", str(conf), "-lf",
            str(work / "leases"), "-pf", str(work / "pid"), "-sf", str(script),
            *(["-S"] if inform else []), "eth0"]  # fmt: skip
    proc = cluster.ns.popen(vm.netns, args, log=str(log))
    try:
        with contextlib.suppress(AssertionError):
            wait_until(lambda: out.exists() or proc.poll() is not None, 20, "dhclient -6")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert out.exists(), f"dhclient -6 in {vm.name} got no reply:\n{log.read_text()}"
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def link_local(host: FelixHost, iface: str) -> str:
    out = host.exec(["ip", "-j", "-6", "addr", "show", "dev", iface, "scope", "link"]).stdout
    return str(json.loads(out)[0]["addr_info"][0]["local"])


def routes6(cluster: Cluster, vm: VM) -> list[dict[str, Any]]:
    out = cluster.ns.exec(vm.netns, ["ip", "-j", "-6", "route", "show"]).stdout
    return [r for r in json.loads(out) if not r["dst"].startswith("fe80:")]


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
    for subnet_id in (SUB4, SUB6, SUB4_NET2):
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
        allowed_address_pairs=[{"ip_address": "198.18.10.66"}],
    )  # fmt: skip
    c = add_vm(
        cluster, host, "vmc", "3c4d5e6f-cccc-4ccc-8ccc-00000000000c", mac_c, [(SUB4_NET2, "198.18.20.5")]
    )  # fmt: skip
    # Felix must know the taps before it lets DHCP in; B's address pair is routed to it too.
    for vm, ip in ((a, a.ip(4)), (b, b.ip(4)), (c, c.ip(4)), (b, "198.18.10.66")):
        wait_until(lambda vm=vm, ip=ip: f"{ip} dev {vm.tap}" in host.routes(4), what=f"{ip} route")
    host.exec(["ip", "link", "set", a.tap, "mtu", "1400"])  # before the agent starts

    # Neutron DHCP agent options, as networking-calico's agent reads them.
    conf = tmp_path / "dhcp_agent.ini"
    conf.write_text("[DEFAULT]\ndhcp_lease_duration = 600\ndns_domain = example.org.\n")
    agent = Agent(cluster, host, agents[1], conf)
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
    assert (lease_a["dns"], lease_a["hostname"], lease_a["mtu"]) == ("198.18.10.53", "vm-a", "1400")
    assert (lease_a["lease"], lease_a["domain"]) == ("600", "example.org")
    lease_b = dhcp(cluster, b, tmp_path)
    assert (lease_b["ip"], lease_b["router"], lease_b["hostname"], lease_b["mtu"]) == (
        "198.18.10.6",
        "198.18.10.1",
        "host-198-18-10-6",
        "1500",
    )
    # B's allowed address pair is not handed out.
    assert "198.18.10.66" not in agent.hosts_file(NET1)
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

    # B takes up its allowed address pair: routed to it, B may send from it, and it is a
    # member of the security group (ICMP from members).
    cluster.ns.exec(b.netns, ["ip", "addr", "add", "198.18.10.66/32", "dev", "eth0"])
    assert ping(cluster.ns, a.netns, "198.18.10.66")
    ping_from = ["ping", "-c1", "-W1", "-I", "198.18.10.66", a.ip(4)]
    assert cluster.ns.exec(b.netns, ping_from, check=False).returncode == 0
    assert connects(cluster.ns, a.netns, "tcp", "198.18.10.66", 5000)
    assert not connects(cluster.ns, a.netns, "tcp", "198.18.10.66", 6000)

    # A tap's new MTU reaches its VM's next lease.
    host.exec(["ip", "link", "set", b.tap, "mtu", "1450"])
    wait_until(lambda: "option:mtu,1450" in Path(agent.files(NET1).opts).read_text(), what="MTU")
    assert dhcp(cluster, b, tmp_path)["mtu"] == "1450"

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


def test_dhcpv6_stateful_and_stateless_vms(
    cluster: Cluster, agents: tuple[list[Agent], Path], tmp_path: Path
) -> None:
    host = cluster.host("h1", FELIX_INTERFACEPREFIX="tap")
    host.start()
    host.wait_ready()
    for subnet_id in (SUB6_STATEFUL, SUB6_STATELESS):
        write_subnet(cluster, subnet_id)
    cluster.client.apply(
        translate.policy_for_security_group({"id": SG, "name": "default"}, SG_RULES, None)
    )
    mac_a, mac_b, mac_c = "fa:16:3e:00:30:05", "fa:16:3e:00:30:06", "fa:16:3e:00:40:05"
    slaac_c = eui64("2001:db8:40::/64", mac_c)
    # IPv6-only ports: A and B on the stateful subnet, C on the stateless one.
    a = add_vm(
        cluster, host, "vma", "4d5e6f70-aaaa-4aaa-8aaa-00000000003a", mac_a,
        [(SUB6_STATEFUL, "2001:db8:30::5")], dns_assignment=[{"fqdn": "vm-a.example.org."}],
    )  # fmt: skip
    b = add_vm(
        cluster, host, "vmb", "5e6f7081-bbbb-4bbb-8bbb-00000000003b", mac_b,
        [(SUB6_STATEFUL, "2001:db8:30::6")],
    )  # fmt: skip
    c = add_vm(
        cluster, host, "vmc", "6f708192-cccc-4ccc-8ccc-00000000004c", mac_c,
        [(SUB6_STATELESS, slaac_c)],
    )  # fmt: skip
    for vm in (a, b, c):
        wait_until(
            lambda vm=vm: f"{vm.ip(6)} dev {vm.tap}" in host.routes(6), what=f"{vm.name} route"
        )

    agent = Agent(cluster, host, agents[1])
    agents[0].append(agent)
    agent.start()
    wait_until(lambda: agent.dnsmasq_pid(NET3) and agent.dnsmasq_pid(NET4), 20, "two dnsmasqs")

    # Stateful: each VM leases exactly its port's address (pinned to its MAC) and the DNS
    # server; the RA (M flag, prefix neither autonomous nor on-link) adds no address and
    # no prefix route, only the default route via the host's link-local on the tap.
    # B's DUID is a DUID-UUID (as systemd-networkd may send), which holds no MAC: dnsmasq
    # must find B's MAC from the link, not from the DUID.
    for vm, duid in ((b, DUID_UUID), (a, None)):
        reply = dhcp6(cluster, vm, tmp_path, duid=duid)
        assert (reply["address"], reply["dns"]) == (vm.ip(6), "2001:db8:30::53"), reply
    for vm in (a, b):
        router = link_local(host, vm.tap)
        wait_until(
            lambda vm=vm: any(r["dst"] == "default" for r in routes6(cluster, vm)),
            20,
            f"{vm.name} default route from RA",
        )
        assert [(r["dst"], r.get("gateway")) for r in routes6(cluster, vm)] == [
            (vm.ip(6), None),  # the kernel's route for the /128 itself
            ("default", router),
        ]
        assert addresses(cluster, vm, 6) == [vm.ip(6)]

    # Stateless: the SLAAC address Neutron computed, the default route via the host, and an
    # Information-request that gets the DNS server and no address.
    wait_until(lambda: addresses(cluster, c, 6) == [slaac_c], 20, "vmc SLAAC")
    wait_until(
        lambda: (
            [(r["dst"], r.get("gateway")) for r in routes6(cluster, c)]
            == [("default", link_local(host, c.tap))]
        ),
        20,
        "vmc default route only",
    )
    info = dhcp6(cluster, c, tmp_path, inform=True)
    assert (info["address"], info["dns"]) == ("", "2001:db8:40::53"), info
    assert addresses(cluster, c, 6) == [slaac_c]

    # The security group over IPv6: ICMP between members, TCP 5000 only.
    assert ping(cluster.ns, a.netns, b.ip(6)) and ping(cluster.ns, b.netns, a.ip(6))
    assert ping(cluster.ns, a.netns, slaac_c) and ping(cluster.ns, c.netns, b.ip(6))
    serve(cluster.ns, b.netns, "::", 5000)
    serve(cluster.ns, b.netns, "::", 6001)
    wait_until(lambda: connects(cluster.ns, a.netns, "tcp", b.ip(6), 5000), what="allowed TCP")
    assert connects(cluster.ns, c.netns, "tcp", b.ip(6), 5000)
    assert not connects(cluster.ns, a.netns, "tcp", b.ip(6), 6001)
    assert not connects(cluster.ns, a.netns, "udp", b.ip(6), 5000)
