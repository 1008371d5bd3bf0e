"""The Neutron driver and the DHCP agent while etcd members die (issue #13): a 3-member cluster,
both components given all three endpoints; per round, the member the agent talks to and then
the member the driver talks to are SIGKILLed, each once as a follower and once as the leader
(leadership is moved onto or off the victim first), and started again afterwards.

While the member is down, Neutron's API creates a port on a network that already has a
dnsmasq, then a network, a DHCP subnet, a security group with a rule and a port on them, and
deletes the previous kill's extra port; every call must succeed. Measured per kill: seconds
from the kill until the first port's endpoint is in etcd (the driver's next write) and until
its MAC is in the agent's dnsmasq host file; the floor is the same with every member up.
Then, as follower and as leader, the driver's member is killed while Neutron creates, renames
and deletes ports back to back (a kill may land mid-request), and frozen (SIGSTOP) with a
port's endpoint delete in flight, then killed: that delete's outcome is unknown, and the
driver must finish it itself.

Checked over the run: everything Neutron holds is in etcd (endpoints, SG policies, DHCP
subnets) and nothing it deleted; every port has its dnsmasq host entry; the agent resumed its
watches on another member after each of its kills and never re-listed; the agent process
never exited; the driver stayed the elected leader, no write of its own failed (nothing left
to a repair resync) and it ran no resync after its first. `bench/etcd_cluster_openstack.py`
runs this test with more rounds and writes the figures (CALICO_KILL_ROUNDS,
CALICO_KILL_FIGURES).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from neutron_harness import HOST1, CalicoMl2TestCase, wait_for
from oslo_config import cfg

from calico import programs
from calico.datastore.api import DatastoreError
from calico.datastore.config import EtcdConfig, host_order
from calico.datastore.etcd import EtcdBackend
from calico.openstack import keys
from calico.openstack.dhcp.config import network_files
from calico.openstack.dhcp.dnsmasq import owned_dnsmasq
from calico.testing.etcd_server import EtcdCluster, EtcdServer
from calico.testing.netns import Namespaces

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.fv,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the DHCP agent runs in a netns"),
]

AGENT = str(Path(sys.executable).parent / "calico-dhcp-agent")
ROUNDS = int(os.environ.get("CALICO_KILL_ROUNDS", "1"))
FIGURES = os.environ.get("CALICO_KILL_FIGURES")  # where the bench wants the figures (JSON)
SWITCHED = "etcd: switched to endpoint "  # calico.datastore.etcd_gateway, a call failed over
RESUME = "on another member"  # calico.datastore.etcd_watch, a watch resumed
RELIST = "re-listing in"  # calico.datastore.syncer, a watch failed and the syncer re-lists
REPAIR = "a resync will repair etcd"  # the driver, after a write of its own failed
RESYNC = "resync: "  # calico.openstack.store, the summary of every resync
UNKNOWN = "outcome unknown"  # calico.datastore.etcd_gateway, a request died in flight
TIMEOUT = 60.0
CHURN_KILL_AFTER, CHURN_AFTER_KILL = 0.5, 2.0  # seconds of Neutron churn around a kill


@pytest.fixture(autouse=True)
def calico_etcd(request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    """Replaces conftest's single etcd with a 3-member cluster (etcd's default raft timings)."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    with EtcdCluster(3) as cluster:
        request.instance.cluster = cluster
        request.instance.etcd = cluster.members[0]
        yield cluster.members[0]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class TestEtcdMemberKills(CalicoMl2TestCase):
    elect_leader = True
    cluster: EtcdCluster

    def setup_config(self) -> None:
        super().setup_config()
        os.environ["ETCD_ENDPOINTS"] = ",".join(self.cluster.endpoints)  # (patched dict)
        cfg.CONF.set_override("quota_security_group", -1, group="QUOTAS")  # one per kill

    def setUp(self) -> None:
        for tool in ("dnsmasq", "ip"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} not found")
        # The driver's log lines, from before it starts.
        self.driver_log = _Lines()
        calico_log = logging.getLogger("calico")
        level = calico_log.level
        calico_log.setLevel(logging.INFO)
        calico_log.addHandler(self.driver_log)
        self.addCleanup(calico_log.setLevel, level)
        self.addCleanup(calico_log.removeHandler, self.driver_log)
        super().setUp()
        self.backend.close()
        self.backend = EtcdBackend(EtcdConfig(endpoints=self.endpoints("agent")))
        self.addCleanup(self.backend.close)
        # dnsmasq reads the agent's files as user nobody: world-searchable, unlike TMPDIR.
        self.run_dir = Path(tempfile.mkdtemp(prefix="calico-etcd-kill-", dir="/tmp"))
        self.run_dir.chmod(0o755)
        self.addCleanup(shutil.rmtree, self.run_dir, ignore_errors=True)
        self.ns = Namespaces()
        self.addCleanup(self.ns.close)
        self.agent: programs.Popen[bytes] | None = None
        self.addCleanup(self._stop_agent)  # runs first: dnsmasq, the ns- devices, the log
        self.hostns = self.ns.add("host")
        self.agent_log = self.run_dir / "dhcp-agent.log"
        self.dhcp_dir = self.run_dir / "dhcp"

    # -- the DHCP agent ---------------------------------------------------------------------

    def start_agent(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NODENAME": HOST1,
            # Unix sockets: the agent's namespace cannot reach the root's loopback.
            "ETCD_ENDPOINTS": ",".join(self.endpoints("agent")),
            "CALICO_RUN_DIR": str(self.run_dir),
        }
        self.agent = self.ns.popen(self.hostns, [AGENT], env=env, log=str(self.agent_log))

    def _stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGTERM)  # stops its dnsmasq, removes ns- devices
            with contextlib.suppress(programs.TimeoutExpired):
                self.agent.wait(timeout=10)
        for entry in self.dhcp_dir.iterdir() if self.dhcp_dir.is_dir() else ():
            for pid in owned_dnsmasq(network_files(str(self.dhcp_dir), entry.name)) or ():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.agent_log.exists():
            print("--- dhcp agent log ---\n" + self.agent_log.read_text(errors="replace")[-8000:])

    def agent_lines(self) -> list[str]:
        return self.agent_log.read_text(errors="replace").splitlines()

    def host_entry(self, port: dict[str, Any]) -> bool:
        """Whether the port's MAC and IPv4 address are in its network's dnsmasq host file."""
        path = Path(network_files(str(self.dhcp_dir), port["network_id"]).hosts)
        with contextlib.suppress(FileNotFoundError):
            text = path.read_text()
            ip = port["fixed_ips"][0]["ip_address"]
            return any(port["mac_address"] in ln and ip in ln for ln in text.splitlines())
        return False

    # -- etcd members -----------------------------------------------------------------------

    def endpoints(self, component: str) -> tuple[str, ...]:
        """What a component is given: the driver the members' URLs, the agent (and the test's
        own reader, whose failovers must not be taken for the driver's) their unix sockets."""
        if component == "driver":
            return self.cluster.endpoints
        return tuple(m.unix_endpoint for m in self.cluster.members)

    def order(self, component: str) -> list[int]:
        """The members in the order the component tries them: the driver as listed, the
        agent in its host's order (calico.datastore.config.host_order)."""
        endpoints = self.endpoints(component)
        if component == "driver":
            return list(range(len(endpoints)))
        return [endpoints.index(e) for e in host_order(endpoints, HOST1)]

    def switched(self, lines: list[str], component: str) -> list[str]:
        """The endpoints the component's calls switched to in lines."""
        switched = [ln.split(SWITCHED, 1)[1].strip() for ln in lines if SWITCHED in ln]
        return [endpoint for endpoint in switched if endpoint in self.endpoints(component)]

    def failed_over(self, component: str, victim: int, lines: list[str]) -> int:
        """The member a component's calls use after `lines`, logged since victim was killed:
        the one a call switched to, or after a watch broke the member after the victim (the
        client avoids the endpoint that dropped it and takes the next one); else the same
        one. (The driver's watches may sit elsewhere: during an election a call can fail
        over past a member that a watch, needing no leader, was opened on.)"""
        endpoints = self.endpoints(component)
        switched = self.switched(lines, component)
        if switched:
            return endpoints.index(switched[-1])
        using = self.using[component]
        if using == victim and any(RESUME in ln for ln in lines):
            order = self.order(component)
            return order[(order.index(victim) + 1) % len(order)]
        return using

    def follow(self, victim: int, since: dict[str, list[str]]) -> None:
        for component, lines in since.items():
            self.using[component] = self.failed_over(component, victim, lines)

    def statuses(self) -> list[tuple[int, int] | None]:
        """(member id, its leader's id) of each member, None for one that does not answer."""
        out: list[tuple[int, int] | None] = []
        for member in self.cluster.members:
            backend = EtcdBackend(
                EtcdConfig(endpoints=(member.endpoint,), connect_timeout=0.5, request_timeout=2)
            )
            try:
                out.append(backend.member_status())
            except DatastoreError:
                out.append(None)
            finally:
                backend.close()
        return out

    def leader(self) -> int | None:
        for i, status in enumerate(self.statuses()):
            if status is not None and status[0] == status[1]:
                return i
        return None

    def make_leader(self, want_leader: bool, victim: int) -> None:
        """Move leadership onto the victim, or off it onto another member."""
        current = wait_for(lambda: self.leader() is not None and (self.leader(),), TIMEOUT)[0]
        if (current == victim) == want_leader:
            return
        target = victim if want_leader else next(i for i in range(3) if i != victim)
        statuses = self.statuses()
        target_id = statuses[target][0]  # type: ignore[index]
        leader_url = self.cluster.members[current].endpoint
        response = httpx.post(
            f"{leader_url}/v3/maintenance/transfer-leadership",
            json={"targetID": str(target_id)},
            timeout=10,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        wait_for(lambda: self.leader() == target, TIMEOUT)

    # -- Neutron ----------------------------------------------------------------------------

    def pump(self, condition: Any, timeout: float = TIMEOUT) -> Any:
        """Wait for condition, running the driver's queued Neutron DB work meanwhile."""

        def step() -> None:
            if self.agent is not None and self.agent.poll() is not None:
                raise AssertionError(f"the DHCP agent exited {self.agent.returncode}")
            self.executor.run_pending(wait=0.02)

        return wait_for(condition, timeout, step=step)

    def timed_port(self, net: Any, device_id: str, started: float) -> tuple[Any, float, float]:
        """A VM port on net; seconds from `started` until its endpoint is in etcd and until
        the agent's dnsmasq has its host entry."""
        port = self.make_vm_port(net, device_id=device_id)
        key = self.wep_key(HOST1, device_id, port["id"])
        self.pump(lambda: self.etcd_json(key) is not None)
        written = time.monotonic() - started
        self.pump(lambda: self.host_entry(port))
        return port, written, time.monotonic() - started

    def more_changes(self, tag: str) -> tuple[Any, Any, Any]:
        """A network, DHCP subnet, security group with a rule, and a port on them."""
        net = self.make_net("local", name=f"net-{tag}")
        subnet = self.make_subnet(net, cidr=f"198.18.{100 + int(tag)}.0/24")
        sg = self._make_security_group(self.fmt, name=f"sg-{tag}")["security_group"]
        self.create_sg_rule(sg["id"], direction="ingress", protocol="tcp", port_range_min=22,
                            port_range_max=22)  # fmt: skip
        port = self.make_vm_port(net, device_id=f"vm-extra-{tag}", security_groups=[sg["id"]])
        return subnet, sg, port

    def churn_through_kill(self, net: Any, role: str) -> None:
        """A kill that lands while the driver's requests are in flight: ports created,
        renamed and (every other one) deleted through Neutron back to back, the driver's
        member SIGKILLed by a timer meanwhile."""
        victim = self.using["driver"]
        self.make_leader(role == "leader", victim)
        self.pump(lambda: True)
        before = {"agent": len(self.agent_lines()), "driver": len(self.driver_log.lines)}
        member = self.cluster.members[victim]
        timer = threading.Timer(CHURN_KILL_AFTER, member.kill)
        timer.start()
        try:
            deadline = time.monotonic() + CHURN_KILL_AFTER + CHURN_AFTER_KILL
            i = 0
            while time.monotonic() < deadline:
                port = self.make_vm_port(net, device_id=f"vm-churn-{role}-{i}")
                self.update_port(port["id"], name=f"renamed-{i}")
                if i % 2:
                    self._delete("ports", port["id"], as_admin=True)
                i += 1
        finally:
            timer.join()
        self.follow(victim, {
            "agent": self.agent_lines()[before["agent"] :],
            "driver": self.driver_log.lines[before["driver"] :],
        })  # fmt: skip
        member.start()

    def freeze_then_kill(self, port: Any, role: str) -> None:
        """A member that stops answering with the driver's request in flight, then dies: the
        driver's member SIGSTOPped, a port deleted through Neutron (the endpoint's delete,
        the first request, is sent to it and times out: outcome unknown), then SIGKILLed."""
        victim = self.using["driver"]
        self.make_leader(role == "leader", victim)
        self.pump(lambda: True)
        before = {"agent": len(self.agent_lines()), "driver": len(self.driver_log.lines)}
        member = self.cluster.members[victim]
        assert member.pid is not None
        os.kill(member.pid, signal.SIGSTOP)
        try:
            self._delete("ports", port["id"], as_admin=True)
        finally:
            member.kill()
        since = {
            "agent": self.agent_lines()[before["agent"] :],
            "driver": self.driver_log.lines[before["driver"] :],
        }
        assert any(UNKNOWN in ln for ln in since["driver"]), since["driver"]
        self.follow(victim, since)
        member.start()

    # -- the test ---------------------------------------------------------------------------

    def test_member_kills_lose_no_update(self) -> None:
        config = "/calico/resources/v3/projectcalico.org/felixconfigurations/default"
        self.pump(lambda: self.etcd_json(config))  # the leader took office (and resynced)
        self.pump(lambda: any(RESYNC in ln for ln in self.driver_log.lines))
        assert self.calico.is_leader
        self.felix_heartbeat(HOST1, first=True)  # a live Felix agent: ports bind to HOST1
        self.start_agent()
        assert self.agent is not None
        agent_pid = self.agent.pid

        net = self.make_net(name="net-main")
        self.make_subnet(net, cidr="198.18.1.0/24")
        floors = [self.timed_port(net, f"vm-floor-{i}", time.monotonic())[1:] for i in range(3)]
        floor_write, floor_dhcp = min(f[0] for f in floors), min(f[1] for f in floors)
        resyncs = sum(RESYNC in ln for ln in self.driver_log.lines)

        kills: list[dict[str, Any]] = []
        # Each starts on the first member of its order.
        self.using = {c: self.order(c)[0] for c in ("agent", "driver")}
        extra_port: Any = None
        for _ in range(ROUNDS):
            for component in ("agent", "driver"):
                for role in ("follower", "leader"):
                    n = len(kills)
                    victim = self.using[component]
                    self.make_leader(role == "leader", victim)
                    self.pump(lambda: True)  # (drain queued DB work before the clock starts)
                    before = {
                        "agent": len(self.agent_lines()),
                        "driver": len(self.driver_log.lines),
                    }
                    member = self.cluster.members[victim]
                    member.kill()
                    started = time.monotonic()
                    _, written, served = self.timed_port(net, f"vm-kill-{n}", started)
                    if extra_port is not None:
                        self._delete("ports", extra_port["id"], as_admin=True)
                    extra_port = self.more_changes(str(n))[2]
                    since = {
                        "agent": self.agent_lines()[before["agent"] :],
                        "driver": self.driver_log.lines[before["driver"] :],
                    }
                    # The kill hit the component: it failed over (the agent's watches; the
                    # driver's calls, or its watches, which may sit on another member).
                    assert any(
                        RESUME in ln or (component == "driver" and self.switched([ln], component))
                        for ln in since[component]
                    ), since[component]
                    self.follow(victim, since)
                    assert self.using[component] != victim
                    kills.append({
                        "component": component, "role": role, "member": member.name,
                        "write": written, "dhcp": served,
                    })  # fmt: skip
                    member.start()

        # Kills landing mid-request: by chance while Neutron churns, for sure after a freeze.
        for role in ("follower", "leader"):
            self.churn_through_kill(net, role)
            self.freeze_then_kill(self.make_vm_port(net, device_id=f"vm-frozen-{role}"), role)

        # The counts first, so that the bench has its figures also when a goal is missed.
        self.pump(lambda: True)
        agent_lines = self.agent_lines()
        counts = {
            "restarts": int(self.agent.poll() is not None or self.agent.pid != agent_pid),
            "agent_relists": sum(RELIST in ln for ln in agent_lines),
            "agent_resumes": sum(RESUME in ln for ln in agent_lines),
            "driver_repairs": sum(REPAIR in ln for ln in self.driver_log.lines),
            "driver_resyncs": sum(RESYNC in ln for ln in self.driver_log.lines) - resyncs,
            "driver_demoted": int(not self.calico.is_leader)
            + sum("no longer" in ln for ln in self.driver_log.lines),
        }
        # Requests the kills left with an unknown outcome (the two frozen deletes, and any
        # the churn's kills happened to hit), each finished without a repair resync.
        ambiguous = sum(UNKNOWN in ln for ln in self.driver_log.lines)
        if FIGURES:
            floor = {"write": floor_write, "dhcp": floor_dhcp}
            Path(FIGURES).write_text(
                json.dumps({"floor": floor, "kills": kills, "ambiguous": ambiguous, **counts})
            )

        # Everything Neutron holds reached etcd, and nothing it deleted stayed there.
        ports = [p for p in self._list("ports", as_admin=True)["ports"]
                 if p["device_owner"] == "compute:nova"]  # fmt: skip
        weps = self.weps()
        assert set(weps) == {keys.endpoint_name(HOST1, p["device_id"], p["id"]) for p in ports}
        for port in ports:
            wep = weps[keys.endpoint_name(HOST1, port["device_id"], port["id"])]
            assert wep["spec"]["mac"] == port["mac_address"]
            assert wep["spec"]["ipNetworks"] == [f"{port['fixed_ips'][0]['ip_address']}/32"]
            self.pump(lambda port=port: self.host_entry(port))
        for sg in self._list("security-groups")["security_groups"]:
            policy = self.etcd_json(self.policy_key(sg["id"]))
            assert policy is not None, f"no policy for security group {sg['name']}"
            if sg["name"] != "default":  # (the rule added to each of ours: TCP 22 in)
                assert len(policy["spec"]["ingress"]) == 1, policy
        for subnet in self._list("subnets")["subnets"]:
            assert self.subnet_json(subnet["id"]) is not None, subnet["cidr"]

        # No process restarted, no full resync, nothing left for a repair.
        assert counts["agent_resumes"] >= sum(k["component"] == "agent" for k in kills)
        del counts["agent_resumes"]
        assert counts == dict.fromkeys(counts, 0), (counts, self.driver_log.lines[-30:])
