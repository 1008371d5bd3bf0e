"""End to end: a Neutron port created through the real ML2 plugin becomes a routed, policed VM
interface on a host.

Neutron runs in-process (`CalicoMl2TestCase`, sqlite) with the `calico` driver as the elected
leader against the test's etcd. A compute host is a network namespace running `calico-felix`
and `calico-dhcp-agent` as processes, as an operator runs them (NODENAME, ETCD_ENDPOINTS on
etcd's unix socket, CALICO_RUN_DIR). The driver's leader writes the FelixConfiguration
(interface prefix `tap`, endpoint reporting) before Felix starts; Felix's heartbeat reaches
Neutron through the real FelixStatusWatcher as a live agent, so ports bind to the host.

VMs are created as Nova's libvirt driver plugs them: a veth `tap<port_id[:11]>` in the host
namespace whose peer is the VM's `eth0` with the port's MAC and no address; the VM gets its
address from the agent's dnsmasq (busybox udhcpc; SLAAC from its RAs). Real packets then
check the security group and its changes through Neutron, Felix's endpoint status turns the
ports ACTIVE, and deleting a port through Neutron removes its route.
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
from pathlib import Path
from typing import Any

import pytest
from neutron.objects import agent as agent_obj
from neutron_harness import ACTIVE, HOST1, CalicoMl2TestCase, wait_for

from calico import programs
from calico.openstack import keys
from calico.openstack.decisions import AGENT_TYPE_FELIX
from calico.openstack.dhcp.config import network_files
from calico.openstack.dhcp.dnsmasq import owned_dnsmasq
from calico.testing.netns import Namespaces
from calico.testing.workloads import add_upstream, connects, ping, serve

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.fv,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: runs Felix and VMs in network namespaces"
    ),
]

BIN = Path(sys.executable).parent
FELIX = str(BIN / "calico-felix")
AGENT = str(BIN / "calico-dhcp-agent")
IN_SYNC = "dataplane in sync with the datastore"
FELIX_ENV = {  # short refresh and reporting intervals, as in tests/fv
    "FELIX_IPTABLESREFRESHINTERVAL": "2",
    "FELIX_ROUTEREFRESHINTERVAL": "2",
    "FELIX_IPSETSREFRESHINTERVAL": "2",
    "FELIX_REPORTINGINTERVALSECS": "1",
}
TOOLS = ("etcd", "ip", "iptables-restore", "ipset", "dnsmasq", "busybox")
NODE = HOST1
CIDR4, GATEWAY4 = "198.18.40.0/24", "198.18.40.1"
CIDR6, GATEWAY6 = "2001:db8:40::/64", "2001:db8:40::1"

# udhcpc hands the lease to this script in its environment: record it, apply it with `ip`.
LEASE_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\n' "$ip" "$mask" "$router" > "{out}"
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    ;;
esac
exit 0
"""


class VM:
    """A VM's namespace behind its tap, as Nova's libvirt VIF driver plugs a `tap` VIF."""

    def __init__(self, test: TestVmOnComputeHost, name: str, port: dict[str, Any]) -> None:
        self.test = test
        self.name = name
        self.port = port
        self.tap = keys.interface_name(port["id"])
        ns = test.ns
        self.netns = ns.add(name)
        test.host(["ip", "link", "add", self.tap, "type", "veth", "peer", "name", "eth0",
                   "address", port["mac_address"], "netns", self.netns])  # fmt: skip
        test.host(["sysctl", "-qw", f"net.ipv6.conf.{self.tap}.accept_dad=0"])
        ns.exec(self.netns, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
        test.host(["ip", "link", "set", self.tap, "up"])
        ns.exec(self.netns, ["ip", "link", "set", "eth0", "up"])

    def ip(self, version: int) -> str:
        for fixed in self.port["fixed_ips"]:
            if ipaddress.ip_address(fixed["ip_address"]).version == version:
                return str(fixed["ip_address"])
        raise AssertionError(f"{self.name} has no IPv{version} address")

    def dhcp(self) -> dict[str, str]:
        """Run udhcpc on eth0 until it has a lease; the lease's fields."""
        out = self.test.run_dir / f"{self.name}.lease"
        script = self.test.run_dir / f"{self.name}.udhcpc"
        script.write_text(LEASE_SCRIPT.format(out=out))
        script.chmod(0o755)
        args = ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "2",
                "-s", str(script)]  # fmt: skip
        proc = self.test.ns.exec(self.netns, args, check=False, timeout=60)
        assert proc.returncode == 0, f"udhcpc in {self.name} failed:\n{proc.stdout}{proc.stderr}"
        return dict(line.split("=", 1) for line in out.read_text().splitlines())

    def addresses(self, version: int) -> list[str]:
        out = self.test.ns.exec(
            self.netns, ["ip", "-j", f"-{version}", "addr", "show", "dev", "eth0"]
        ).stdout
        infos = json.loads(out)[0].get("addr_info", [])
        return [a["local"] for a in infos if a.get("scope") == "global"]


class TestVmOnComputeHost(CalicoMl2TestCase):
    elect_leader = True

    def setUp(self) -> None:
        for tool in TOOLS:
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} not found (make test installs it)")
        super().setUp()
        # dnsmasq reads the agent's files as user nobody: the run directory must be
        # world-searchable, which Neutron's per-test TMPDIR (and pytest's tmp_path) is not.
        self.run_dir = Path(tempfile.mkdtemp(prefix="calico-e2e-vm-", dir="/tmp"))
        self.run_dir.chmod(0o755)
        self.addCleanup(shutil.rmtree, self.run_dir, ignore_errors=True)
        self.ns = Namespaces()
        self.addCleanup(self.ns.close)  # kills Felix, the agent and servers by PID, then netns
        self.procs: dict[str, tuple[programs.Popen[bytes], Path]] = {}
        self.addCleanup(self._stop_processes)  # runs first: the agent's dnsmasq, the logs
        self.hostns = self.ns.add("host")
        add_upstream(self.ns, self.hostns, "up")

    # -- helpers ------------------------------------------------------------------------------

    def host(self, args: list[str]) -> str:
        return self.ns.exec(self.hostns, args).stdout

    def pump_until(self, condition: Any, timeout: float = 20.0) -> Any:
        """Wait for condition, running the driver's queued Neutron DB work meanwhile."""

        def step() -> None:
            for name, (proc, log) in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited {proc.returncode}:\n{_tail(log)}")
            self.executor.run_pending(wait=0.02)

        return wait_for(condition, timeout, step=step)

    def start(self, name: str, args: list[str]) -> Path:
        run_dir = self.run_dir / name
        run_dir.mkdir(mode=0o755)
        log = run_dir / f"{name}.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NODENAME": NODE,
            "ETCD_ENDPOINTS": self.etcd.unix_endpoint,
            "CALICO_RUN_DIR": str(run_dir),
            **(FELIX_ENV if name == "felix" else {}),
        }
        self.procs[name] = (self.ns.popen(self.hostns, args, env=env, log=str(log)), log)
        return log

    def _stop_processes(self) -> None:
        agent = self.procs.get("dhcp-agent")
        if agent is not None and agent[0].poll() is None:
            os.kill(agent[0].pid, signal.SIGTERM)  # stops its dnsmasq, removes ns- devices
            with contextlib.suppress(programs.TimeoutExpired):
                agent[0].wait(timeout=10)
        dhcp_dir = self.run_dir / "dhcp-agent" / "dhcp"
        for entry in dhcp_dir.iterdir() if dhcp_dir.is_dir() else ():
            for pid in owned_dnsmasq(network_files(str(dhcp_dir), entry.name)) or ():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name, (_, log) in self.procs.items():
            print(f"--- {name} log ---\n{_tail(log)}")

    def routes(self, version: int = 4) -> str:
        return self.host(["ip", f"-{version}", "route", "show"])

    # -- the test -----------------------------------------------------------------------------

    def test_neutron_port_becomes_routed_policed_vm_interface(self) -> None:
        # The leader writes the cluster config Felix needs; Felix starts after it, so it
        # has no reason to re-exec itself.
        felix_config = "/calico/resources/v3/projectcalico.org/felixconfigurations/default"
        spec = self.pump_until(lambda: (self.etcd_json(felix_config) or {}).get("spec"))
        assert "tap" in spec["interfacePrefix"].split(",") and spec["endpointReportingEnabled"]
        assert self.calico.is_leader
        felix_log = self.start("felix", [FELIX])
        self.pump_until(lambda: IN_SYNC in _tail(felix_log, 10**6))
        # Felix's own heartbeat -> FelixStatusWatcher -> the driver -> a live Neutron agent.
        agent = self.pump_until(
            lambda: agent_obj.Agent.get_object(self.admin, agent_type=AGENT_TYPE_FELIX, host=NODE)
        )
        assert agent.binary == "calico-felix"
        self.start("dhcp-agent", [AGENT, "--debug"])

        # Neutron: a flat network, DHCP IPv4 and SLAAC IPv6, a security group, two VM ports.
        net = self.make_net(name="e2e-net")
        self.make_subnet(net, cidr=CIDR4)
        self._make_subnet(
            self.fmt, {"network": net}, gateway=GATEWAY6, cidr=CIDR6, ip_version=6,
            ipv6_ra_mode="slaac", ipv6_address_mode="slaac",
        )  # fmt: skip
        sg = self._make_security_group(self.fmt, name="e2e")["security_group"]
        sg_id = sg["id"]
        assert sg["security_group_rules"] == []  # (this test DB has no default rules)
        for ethertype in ("IPv4", "IPv6"):
            self.create_sg_rule(sg_id, direction="egress", ethertype=ethertype)
        self.create_sg_rule(sg_id, direction="ingress", protocol="icmp", remote_group_id=sg_id)
        self.create_sg_rule(
            sg_id, direction="ingress", ethertype="IPv6", protocol="ipv6-icmp",
            remote_group_id=sg_id,
        )  # fmt: skip
        tcp5000 = self.create_sg_rule(
            sg_id, direction="ingress", protocol="tcp", port_range_min=5000,
            port_range_max=5000, remote_group_id=sg_id,
        )  # fmt: skip
        ports = [
            self.make_vm_port(net, host=NODE, device_id=f"vm-{i}", security_groups=[sg_id])
            for i in (1, 2)
        ]
        for port in ports:
            assert port["binding:vif_type"] == "tap"
            assert port["binding:host_id"] == NODE
            assert {ipaddress.ip_address(f["ip_address"]).version for f in port["fixed_ips"]} == {
                4,
                6,
            }

        # Nova plugs the VMs; Felix routes them.
        vm1, vm2 = (VM(self, f"vm{i}", port) for i, port in enumerate(ports, 1))
        for vm in (vm1, vm2):
            self.pump_until(lambda vm=vm: f"{vm.ip(4)} dev {vm.tap}" in self.routes(4))

        # DHCP from the agent's dnsmasq gives each VM exactly its port's address.
        for vm in (vm1, vm2):
            lease = vm.dhcp()
            assert (lease["ip"], lease["mask"], lease["router"]) == (vm.ip(4), "24", GATEWAY4)
            assert vm.addresses(4) == [vm.ip(4)]
        # SLAAC from its RAs: the EUI-64 address Neutron computed from the MAC.
        for vm in (vm1, vm2):
            self.pump_until(lambda vm=vm: vm.addresses(6) == [vm.ip(6)])

        # Felix reports the endpoints up: the ports go ACTIVE in Neutron.
        for port in ports:
            self.pump_until(lambda port=port: self.status_of(port["id"]) == ACTIVE)

        # The security group with real packets: ICMP and TCP 5000 from members, not 6000.
        for port_no in (5000, 6000):
            serve(self.ns, vm2.netns, "0.0.0.0", port_no)
        self.pump_until(lambda: connects(self.ns, vm1.netns, "tcp", vm2.ip(4), 5000))
        assert ping(self.ns, vm1.netns, vm2.ip(4)) and ping(self.ns, vm2.netns, vm1.ip(4))
        self.pump_until(lambda: ping(self.ns, vm1.netns, vm2.ip(6)))
        assert not connects(self.ns, vm1.netns, "tcp", vm2.ip(4), 6000)

        # The group changes through Neutron: 5000 goes, 6000 comes.
        self.delete_sg_rule(tcp5000["id"])
        self.pump_until(lambda: not connects(self.ns, vm1.netns, "tcp", vm2.ip(4), 5000))
        self.create_sg_rule(
            sg_id, direction="ingress", protocol="tcp", port_range_min=6000,
            port_range_max=6000, remote_group_id=sg_id,
        )  # fmt: skip
        self.pump_until(lambda: connects(self.ns, vm1.netns, "tcp", vm2.ip(4), 6000))
        assert not connects(self.ns, vm1.netns, "tcp", vm2.ip(4), 5000)
        assert ping(self.ns, vm1.netns, vm2.ip(4))

        # Neutron deletes VM2's port: its endpoint and its route go from the host.
        self._delete("ports", vm2.port["id"], as_admin=True)
        self.pump_until(lambda: f"{vm2.ip(4)} dev {vm2.tap}" not in self.routes(4))
        assert f"{vm1.ip(4)} dev {vm1.tap}" in self.routes(4)
        assert not ping(self.ns, vm1.netns, vm2.ip(4))


def _tail(log: Path, size: int = 6000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"
