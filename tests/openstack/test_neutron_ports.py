"""Ports and subnets through Neutron's REST API -> WorkloadEndpoints and subnet keys in etcd."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from neutron.objects import agent as agent_obj
from neutron_harness import HOST1, HOST2, CalicoMl2TestCase
from neutron_lib.api.definitions import portbindings

from calico.openstack import keys
from calico.openstack.decisions import AGENT_BINARY_FELIX, AGENT_TYPE_FELIX

pytestmark = pytest.mark.openstack


class TestPorts(CalicoMl2TestCase):
    def test_bound_port_becomes_endpoint_and_follows_updates(self) -> None:
        self.felix_heartbeat(HOST1, first=True)
        net = self.make_net(name="prod-net")
        subnet = self.make_subnet(net, cidr="198.18.1.0/24")
        port = self.make_vm_port(net, device_id="vm-a")

        assert port[portbindings.VIF_TYPE] == "tap"
        assert port[portbindings.VIF_DETAILS]["port_filter"] is True
        wep = self.etcd_json(self.wep_key(HOST1, "vm-a", port["id"]))
        ip = port["fixed_ips"][0]["ip_address"]
        assert wep["spec"] == {
            "orchestrator": "openstack",
            "workload": "vm-a",
            "node": HOST1,
            "endpoint": port["id"],
            "interfaceName": "tap" + port["id"][:11],
            "mac": port["mac_address"],
            "ipNetworks": [f"{ip}/32"],
            "ipv4Gateway": "198.18.1.1",
        }
        (sg_id,) = port["security_groups"]
        labels = wep["metadata"]["labels"]
        assert labels[keys.sg_label(sg_id)] == "default"
        assert labels["projectcalico.org/openstack-network-name"] == "prod-net"
        assert wep["metadata"]["namespace"] == "openstack"
        # Its (default) security group's policy was written when Neutron created the group.
        assert self.etcd_json(self.policy_key(sg_id))["spec"]["selector"] == (
            f"has({keys.sg_label(sg_id)})"
        )
        # Renaming the network relabels its endpoints.
        self._update("networks", net["id"], {"network": {"name": "renamed-net"}})
        labels = self.etcd_json(self.wep_key(HOST1, "vm-a", port["id"]))["metadata"]["labels"]
        assert labels["projectcalico.org/openstack-network-name"] == "renamed-net"
        # The subnet (DHCP on) is published for the DHCP agent.
        assert self.subnet_json(subnet["id"]) == {
            "network_id": net["id"],
            "cidr": "198.18.1.0/24",
            "gateway_ip": "198.18.1.1",
            "host_routes": [],
        }

        # A second fixed IP and an allowed address pair are rewritten into the endpoint.
        self.update_port(
            port["id"],
            fixed_ips=[
                {"subnet_id": subnet["id"], "ip_address": ip},
                {"subnet_id": subnet["id"], "ip_address": "198.18.1.77"},
            ],
            allowed_address_pairs=[{"ip_address": "198.18.9.9"}, {"ip_address": "198.18.64.0/24"}],
        )
        wep = self.etcd_json(self.wep_key(HOST1, "vm-a", port["id"]))
        # Fixed IPs in address order (Neutron's order varies), then the address pair, which
        # is also listed in allowedIps (networking-calico's way); a prefix pair can only be
        # a spoofing allowance.
        fixed = sorted([ip, "198.18.1.77"], key=lambda a: int(ipaddress.ip_address(a)))
        assert wep["spec"]["ipNetworks"] == [*(f"{a}/32" for a in fixed), "198.18.9.9/32"]
        assert wep["spec"]["allowedIps"] == ["198.18.9.9/32"]
        assert wep["spec"]["allowSpoofedSourcePrefixes"] == ["198.18.64.0/24"]

        self._delete("ports", port["id"], as_admin=True)
        assert self.weps() == {}

    def test_status_only_updates_do_not_rewrite_the_endpoint(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net)
        key = self.wep_key(HOST1, "vm-1", port["id"])
        before = self.backend.get(key)
        assert before is not None
        self.plugin.update_port_status(self.admin, port["id"], "ACTIVE", HOST1)
        assert self.status_of(port["id"]) == "ACTIVE"
        after = self.backend.get(key)
        assert after is not None and after.mod_revision == before.mod_revision

    def test_port_moves_between_hosts(self) -> None:
        self.felix_heartbeat(HOST1)
        self.felix_heartbeat(HOST2)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net, host=HOST1)
        assert self.backend.get(self.wep_key(HOST1, "vm-1", port["id"])) is not None

        moved = self.update_port(port["id"], **{portbindings.HOST_ID: HOST2})
        assert moved[portbindings.VIF_TYPE] == "tap"
        assert self.backend.get(self.wep_key(HOST1, "vm-1", port["id"])) is None
        wep = self.etcd_json(self.wep_key(HOST2, "vm-1", port["id"]))
        assert wep["spec"]["node"] == HOST2
        assert list(self.weps()) == [keys.endpoint_name(HOST2, "vm-1", port["id"])]

    def test_unbinding_deletes_the_endpoint(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net)
        assert len(self.weps()) == 1
        unbound = self.update_port(port["id"], **{portbindings.HOST_ID: ""})
        assert unbound[portbindings.VIF_TYPE] == "unbound"
        assert self.weps() == {}

    def test_non_compute_ports_are_not_endpoints(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        self.make_vm_port(net, device_owner="network:dhcp", device_id="dhcp-1")
        assert self.weps() == {}

    def test_binding_refused_on_host_without_felix(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net, host=HOST2)
        assert port[portbindings.VIF_TYPE] == "binding_failed"
        assert self.weps() == {}

    def test_binding_refused_when_felix_heartbeat_expired(self) -> None:
        self.felix_heartbeat(HOST1)
        agent = agent_obj.Agent.get_object(self.admin, agent_type=AGENT_TYPE_FELIX, host=HOST1)
        assert agent.binary == AGENT_BINARY_FELIX
        agent.heartbeat_timestamp = datetime.datetime.utcnow() - datetime.timedelta(hours=1)
        agent.update()
        net = self.make_net()
        self.make_subnet(net)
        with self.assertLogs("calico.openstack.mech_driver", "WARNING") as logs:
            port = self.make_vm_port(net)
        assert port[portbindings.VIF_TYPE] == "binding_failed"
        assert any("is not alive" in line for line in logs.output)
        assert self.weps() == {}

    def test_binding_refused_for_vlan_and_vxlan_networks(self) -> None:
        self.felix_heartbeat(HOST1)
        for network_type, extra in (
            ("vlan", {"provider:segmentation_id": 7}),
            ("vxlan", {"provider:segmentation_id": 1007}),
        ):
            net = self.make_net(network_type, name=network_type, **extra)
            self.make_subnet(net, cidr="198.18.2.0/24")
            with self.assertLogs("calico.openstack.mech_driver", "WARNING") as logs:
                port = self.make_vm_port(net)
            assert port[portbindings.VIF_TYPE] == "binding_failed", network_type
            assert any(f"network type {network_type}" in line for line in logs.output), logs
        assert self.weps() == {}

    def test_local_networks_bind(self) -> None:
        self.felix_heartbeat(HOST1)
        net = self.make_net("local")
        self.make_subnet(net)
        port = self.make_vm_port(net)
        assert port[portbindings.VIF_TYPE] == "tap"
        assert self.etcd_json(self.wep_key(HOST1, "vm-1", port["id"]))["spec"]["node"] == HOST1


class TestSubnets(CalicoMl2TestCase):
    def test_subnet_dhcp_toggle_and_delete(self) -> None:
        net = self.make_net()
        subnet = self.make_subnet(
            net, cidr="198.18.3.0/24", dns_nameservers=["198.18.0.53"], enable_dhcp=False
        )
        assert self.subnet_json(subnet["id"]) is None
        self._update("subnets", subnet["id"], {"subnet": {"enable_dhcp": True}})
        assert self.subnet_json(subnet["id"]) == {
            "network_id": net["id"],
            "cidr": "198.18.3.0/24",
            "gateway_ip": "198.18.3.1",
            "host_routes": [],
            "dns_servers": ["198.18.0.53"],
        }
        self._update("subnets", subnet["id"], {"subnet": {"enable_dhcp": False}})
        assert self.subnet_json(subnet["id"]) is None
        self._update("subnets", subnet["id"], {"subnet": {"enable_dhcp": True}})
        assert self.subnet_json(subnet["id"]) is not None
        self._delete("subnets", subnet["id"])
        assert self.subnet_json(subnet["id"]) is None
