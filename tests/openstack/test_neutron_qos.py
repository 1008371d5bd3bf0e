"""Neutron QoS on Calico ports: refused by Neutron itself, never silently ignored.

calico-py writes no `qosControls` (Felix does not enforce them) and registers no QoS driver
with Neutron's QoS service plugin. With the plugin loaded and the driver `calico` alone,
Neutron's QoS driver manager then finds no driver supporting any rule type, so it refuses
(QosRuleNotSupported, HTTP 409) every policy with rules on a port, on create or update, a
rule added to a policy a port uses, and a policy with rules on a network. With a second
mechanism driver that has a QoS driver, a policy given to a port before binding gets through:
the Calico driver then refuses to bind the port.

(Creating a port with both a binding host and a QoS policy fails inside Neutron's sqlite
test database with StaleDataError whatever the policy, so ports here are created unbound and
bound by an update, as Nova does.)
"""

from __future__ import annotations

from typing import Any

from neutron_harness import HOST1, CalicoMl2TestCase
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from oslo_config import cfg

from calico.openstack import keys


class QoSTestCase(CalicoMl2TestCase):
    def get_additional_service_plugins(self) -> dict[str, str]:
        return {"qos_plugin_name": "qos"}

    def setup_config(self) -> None:
        super().setup_config()
        cfg.CONF.set_override("extension_drivers", ["qos"], group="ml2")

    def qos(self) -> Any:
        return directory.get_plugin(plugin_constants.QOS)

    def policy(self, *, limited: bool) -> str:
        policy = self.qos().create_policy(
            self.admin, {"policy": {"name": "limit", "project_id": self._project_id}}
        )
        if limited:
            self.limit(policy["id"])
        return str(policy["id"])

    def limit(self, policy_id: str) -> None:
        self.qos().create_policy_bandwidth_limit_rule(
            self.admin, policy_id, {"bandwidth_limit_rule": {"max_kbps": 1000, "max_burst_kbps": 0}}
        )

    def assert_refused(self, res: Any, what: str) -> None:
        assert res.status_int == 409, (res.status_int, res.body)
        body = self.deserialize(self.fmt, res)
        assert body["NeutronError"]["type"] == "QosRuleNotSupported", body
        assert "bandwidth_limit is not supported" in body["NeutronError"]["message"], body
        assert what in body["NeutronError"]["message"], body


class TestQoS(QoSTestCase):
    def test_qos_policies_on_calico_ports_are_refused(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        limited = self.policy(limited=True)

        # A new port with a policy that has rules (Nova creates ports unbound).
        res = self._create_port(
            self.fmt,
            net["id"],
            arg_list=("qos_policy_id",),
            is_admin=True,
            device_owner="compute:nova",
            device_id="vm-1",
            qos_policy_id=limited,
        )
        self.assert_refused(res, "port")

        # A bound Calico port given that policy later.
        port = self.make_vm_port(net)
        assert port["binding:vif_type"] == "tap"
        res = self.new_update_request(
            "ports", {"port": {"qos_policy_id": limited}}, port["id"], as_admin=True
        ).get_response(self.api)
        self.assert_refused(res, port["id"])
        assert self.show_port(port["id"])["qos_policy_id"] is None

        # A policy without rules asks for nothing, so a port may have it and be bound by
        # Calico; a rule added to the policy afterwards is refused.
        empty = self.policy(limited=False)
        other = self.make_vm_port(net, host=None, device_id="vm-2", qos_policy_id=empty)
        other = self.update_port(other["id"], **{"binding:host_id": HOST1})
        assert (other["binding:vif_type"], other["qos_policy_id"]) == ("tap", empty)
        with self.assertRaisesRegex(
            Exception, f"bandwidth_limit is not supported by port {other['id']}"
        ):
            self.limit(empty)
        assert self.qos().get_policy(self.admin, empty)["rules"] == []
        assert set(self.weps()) == {
            keys.endpoint_name(HOST1, "vm-1", port["id"]),
            keys.endpoint_name(HOST1, "vm-2", other["id"]),
        }
        assert not any("qosControls" in w["spec"] for w in self.weps().values())

    def test_qos_policies_on_networks_are_refused(self) -> None:
        limited = self.policy(limited=True)
        net = self.make_net()
        res = self.new_update_request(
            "networks", {"network": {"qos_policy_id": limited}}, net["id"], as_admin=True
        ).get_response(self.api)
        assert res.status_int == 409, (res.status_int, res.body)
        body = self.deserialize(self.fmt, res)
        assert body["NeutronError"]["type"] == "QosRuleNotSupportedByNetwork", body


class TestQoSWithOpenvswitch(QoSTestCase):
    """With openvswitch loaded too, its QoS driver accepts rules on unbound ports, so Neutron
    lets a policy through before Calico binds the port: Calico refuses to bind it."""

    _mechanism_drivers = ["openvswitch", "calico"]

    def test_calico_refuses_to_bind_ports_with_qos_rules(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        limited = self.policy(limited=True)
        port = self.make_vm_port(net, host=None, qos_policy_id=limited)
        assert port["qos_policy_id"] == limited  # Neutron let it through
        with self.assertLogs("calico.openstack.mech_driver", "WARNING") as logs:
            port = self.update_port(port["id"], **{"binding:host_id": HOST1})
        assert port["binding:vif_type"] == "binding_failed"
        assert any(
            f"Calico cannot bind port {port['id']}: its QoS policy {limited} is not supported"
            " by calico-py" in line
            for line in logs.output
        ), logs.output
        assert self.weps() == {}

        # A policy without rules asks for nothing: such a port binds.
        empty = self.policy(limited=False)
        other = self.make_vm_port(net, host=None, device_id="vm-2", qos_policy_id=empty)
        other = self.update_port(other["id"], **{"binding:host_id": HOST1})
        assert other["binding:vif_type"] == "tap"
