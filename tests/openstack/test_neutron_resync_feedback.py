"""Resync (driver down while Neutron changed), status feedback, and the elected leader's
duties with the real elector, Felix's own status reporter and the resync CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from typing import Any
from unittest import mock

import pytest
from neutron.objects import agent as agent_obj
from neutron_harness import ACTIVE, DOWN, ERROR, HOST1, HOST2, CalicoMl2TestCase, wait_for
from oslo_config import cfg

from calico.felix.status import StatusReporter
from calico.model.status_keys import status_prefix, workload_status_key
from calico.openstack import compaction, keys, resync_cli
from calico.openstack.decisions import AGENT_TYPE_FELIX
from calico.openstack.resync_request import request_resync
from calico.openstack.store import OpenStackStore

pytestmark = pytest.mark.openstack


class TestResync(CalicoMl2TestCase):
    def test_resync_converges_after_changes_made_while_the_driver_was_off(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        subnet = self.make_subnet(net)
        kept = self.make_vm_port(net, device_id="vm-kept")
        gone = self.make_vm_port(net, device_id="vm-gone")
        sg = self._make_security_group(self.fmt, name="web")["security_group"]
        doomed = self._make_security_group(self.fmt, name="doomed")["security_group"]
        assert self.calico.resync_now().changes() == 0  # in sync already

        # The driver is "off": Neutron changes, etcd hears nothing.
        with mock.patch.object(self.calico._state, "store", mock.Mock(spec=OpenStackStore)):
            new = self.make_vm_port(net, device_id="vm-new", security_groups=[sg["id"]])
            self._delete("ports", gone["id"], as_admin=True)
            self._update("subnets", subnet["id"], {"subnet": {"enable_dhcp": False}})
            self.update_port(kept["id"], allowed_address_pairs=[{"ip_address": "198.18.7.7"}])
            self._delete("security-groups", doomed["id"])
        # ...and someone tampered with etcd meanwhile.
        self.backend.delete(self.policy_key(sg["id"]))
        stale = self.etcd_json(self.wep_key(HOST1, "vm-kept", kept["id"]))
        stale["metadata"]["name"] = keys.endpoint_name(HOST2, "vm-old", "0ld-port")
        stale["spec"].update(node=HOST2, workload="vm-old", endpoint="0ld-port")
        self.backend.put(self.wep_key(HOST2, "vm-old", "0ld-port"), json.dumps(stale).encode())
        self.backend.put(keys.subnet_key(self.region_str, "no-such-subnet"), b"{}")

        report = self.calico.resync_now()

        assert sorted(self.weps()) == sorted(
            keys.endpoint_name(HOST1, vm, p["id"]) for vm, p in (("vm-kept", kept), ("vm-new", new))
        )
        assert self.etcd_json(self.wep_key(HOST1, "vm-kept", kept["id"]))["spec"]["allowedIps"] == [
            "198.18.7.7/32"
        ]
        assert self.etcd_json(self.policy_key(sg["id"]))["spec"]["selector"] == (
            f"has({keys.sg_label(sg['id'])})"
        )
        assert self.subnet_json(subnet["id"]) is None
        assert self.backend.list(keys.subnet_prefix(self.region_str)).items == []
        assert report.created["WorkloadEndpoint"] == [
            keys.endpoint_name(HOST1, "vm-new", new["id"])
        ]
        assert report.updated["WorkloadEndpoint"] == [
            keys.endpoint_name(HOST1, "vm-kept", kept["id"])
        ]
        assert sorted(report.deleted["WorkloadEndpoint"]) == sorted(
            [keys.endpoint_name(HOST1, "vm-gone", gone["id"]), stale["metadata"]["name"]]
        )
        assert report.created["NetworkPolicy"] == [keys.policy_name(sg["id"])]
        assert report.deleted["NetworkPolicy"] == [keys.policy_name(doomed["id"])]
        assert self.backend.get(self.policy_key(doomed["id"])) is None
        assert sorted(report.deleted["subnet"]) == sorted([subnet["id"], "no-such-subnet"])
        assert self.calico.resync_now().changes() == 0


class TestFeedback(CalicoMl2TestCase):
    def test_heartbeats_become_agent_state(self) -> None:
        self.felix_heartbeat(HOST1, first=True)
        agent = agent_obj.Agent.get_object(self.admin, agent_type=AGENT_TYPE_FELIX, host=HOST1)
        assert agent.binary == "calico-felix" and agent.is_active
        started = agent.started_at
        self.felix_heartbeat(HOST1)
        agent = agent_obj.Agent.get_object(self.admin, agent_type=AGENT_TYPE_FELIX, host=HOST1)
        assert agent.started_at == started and agent.heartbeat_timestamp >= started
        (shown,) = self.plugin.get_agents(self.admin, filters={"host": [HOST1]})
        assert shown["alive"] is True and shown["agent_type"] == AGENT_TYPE_FELIX

    def test_endpoint_status_and_expired_heartbeat_set_port_status(self) -> None:
        self.felix_heartbeat(HOST1)
        self.felix_heartbeat(HOST2)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net)
        other = self.make_vm_port(net, host=HOST2, device_id="vm-2")
        assert self.status_of(port["id"]) == DOWN

        self.calico.endpoint_status(HOST1, port["id"], "up")
        self.calico.endpoint_status(HOST2, other["id"], "up")
        self.executor.run_pending()
        assert self.status_of(port["id"]) == ACTIVE
        # A report from a host the port is not bound to is stale (e.g. a migration's source).
        self.calico.endpoint_status(HOST2, port["id"], None)
        self.executor.run_pending()
        assert self.status_of(port["id"]) == ACTIVE

        self.calico.endpoint_status(HOST1, port["id"], "down")
        self.executor.run_pending()
        assert self.status_of(port["id"]) == DOWN
        self.calico.endpoint_status(HOST1, port["id"], "up")
        self.executor.run_pending()
        assert self.status_of(port["id"]) == ACTIVE

        self.calico.felix_dead(HOST1)
        self.executor.run_pending()
        assert self.status_of(port["id"]) == ERROR
        assert self.status_of(other["id"]) == ACTIVE  # other hosts are not affected


class TestLeader(CalicoMl2TestCase):
    elect_leader = True

    def pump_until(self, condition: Any, timeout: float = 15.0) -> Any:
        return wait_for(condition, timeout, step=lambda: self.executor.run_pending(wait=0.02))

    def become_leader(self) -> None:
        self.pump_until(lambda: self.calico.is_leader)
        election = self.backend.get(keys.election_key(self.region_str))
        assert election is not None and election.value.decode().endswith(f":{os.getpid()}")
        felix_config = "/calico/resources/v3/projectcalico.org/felixconfigurations/default"
        spec = self.pump_until(lambda: (self.etcd_json(felix_config) or {}).get("spec"))
        assert "tap" in spec["interfacePrefix"].split(",")
        assert spec["endpointReportingEnabled"] is True
        info = self.etcd_json("/calico/resources/v3/projectcalico.org/clusterinformations/default")
        assert "openstack" in info["spec"]["clusterType"].split(",")
        assert info["spec"]["datastoreReady"] is True

    def test_leader_turns_felix_status_in_etcd_into_neutron_state(self) -> None:
        self.become_leader()
        # Felix's own reporter, writing its heartbeat under a lease as on a compute host.
        felix = StatusReporter(self.backend, HOST1, interval=60, ttl=60)
        assert felix.report()
        self.pump_until(
            lambda: agent_obj.Agent.get_object(self.admin, agent_type=AGENT_TYPE_FELIX, host=HOST1)
        )
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net)
        assert port["binding:vif_type"] == "tap"

        status_key = workload_status_key(HOST1, "openstack", "openstack/vm-1", port["id"])
        self.backend.put(status_key, b'{"status": "up"}')
        self.pump_until(lambda: self.status_of(port["id"]) == ACTIVE)
        self.backend.put(status_key, b'{"status": "down"}')
        self.pump_until(lambda: self.status_of(port["id"]) == DOWN)
        self.backend.put(status_key, b'{"status": "up"}')
        self.pump_until(lambda: self.status_of(port["id"]) == ACTIVE)

        # Felix dies: its heartbeat's lease goes, and the host's ports go to ERROR.
        self.backend.revoke_lease(felix._lease)
        self.pump_until(lambda: self.status_of(port["id"]) == ERROR)

    def test_resync_requests_and_cli(self) -> None:
        self.become_leader()
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net)
        self.backend.delete(self.wep_key(HOST1, "vm-1", port["id"]))

        config = self.get_temp_file_path("neutron.conf")
        with open(config, "w") as handle:
            handle.write(
                f"[DEFAULT]\ncore_plugin = ml2\n[calico]\netcd_port = {self.etcd.client_port}\n"
            )
        out, err = io.StringIO(), io.StringIO()
        codes: list[int] = []

        def cli() -> None:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                codes.append(resync_cli.main(["--config-file", config, "--timeout", "20"]))

        thread = threading.Thread(target=cli)
        thread.start()
        self.pump_until(lambda: not thread.is_alive())
        assert codes == [0], err.getvalue()
        assert out.getvalue() == "resync: created 1 WorkloadEndpoint\n"
        assert self.etcd_json(self.wep_key(HOST1, "vm-1", port["id"]))["spec"]["node"] == HOST1

        # A second request finds nothing to do.
        results: list[dict[str, Any]] = []
        thread = threading.Thread(
            target=lambda: results.append(request_resync(self.backend, self.region_str, 20))
        )
        thread.start()
        self.pump_until(lambda: not thread.is_alive())
        assert results[0]["summary"] == "resync: no changes"

    def test_etcd_outage_during_api_calls_is_repaired(self) -> None:
        self.become_leader()
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        self.etcd.stop()
        # Neutron's API keeps working while etcd is down...
        port = self.make_vm_port(net)
        assert port["binding:vif_type"] == "tap"
        self.etcd.start()
        # ...and the driver asks the leader for a resync once etcd is back.
        self.pump_until(lambda: self.etcd_json(self.wep_key(HOST1, "vm-1", port["id"])), timeout=30)

    def test_demoted_leader_stops_its_duties(self) -> None:
        self.become_leader()
        # The leader starts its watchers after the start-up resync, which runs on the pumped
        # executor: pump until they are up.
        duties = {"felix-status-watch", "resync-requests", "etcd-compaction"}
        self.pump_until(lambda: duties <= _thread_names())
        # The compaction duty has made its first check (networking-calico's keys).
        assert self.pump_until(lambda: self.backend.get(compaction.TRIGGER_KEY)) is not None
        state = self.calico._state
        assert state is not None and state.elector is not None
        state.elector.stop()  # steps down and frees the key for another neutron-server
        assert self.backend.get(keys.election_key(self.region_str)) is None
        wait_for(lambda: not duties & _thread_names())
        assert not self.calico.is_leader
        # Felix status is now someone else's business: nothing reaches Neutron from here.
        self.backend.put(status_prefix(self.region_str) + f"{HOST1}/status", b"{}")
        assert self.executor.run_pending(wait=0.5) == 0
        assert agent_obj.Agent.get_objects(self.admin, host=HOST1) == [], (
            agent_obj.Agent.get_objects(self.admin)
        )


def _thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


class TestLeaderWithoutStartupResync(CalicoMl2TestCase):
    elect_leader = True

    def setup_config(self) -> None:
        super().setup_config()
        cfg.CONF.set_override("startup_resync", "never", group="calico")

    def test_startup_resync_never_leaves_etcd_alone_until_asked(self) -> None:
        stray = self.wep_key(HOST2, "vm-old", "0ld-port")
        self.backend.put(stray, b"{}")  # a resync would delete it: Neutron has no such port
        wait_for(
            lambda: {"felix-status-watch", "resync-requests"} <= _thread_names(),
            15.0,
            step=lambda: self.executor.run_pending(wait=0.02),
        )
        assert self.executor.run_pending(wait=0.5) == 0  # no resync was queued
        assert self.backend.get(stray) is not None
        assert self.calico.resync_now().changes() == 1  # an explicit resync still works
        assert self.backend.get(stray) is None
