"""Security groups (via Neutron's callback registry) and floating IPs -> etcd."""

from __future__ import annotations

import pytest
from neutron_harness import HOST1, CalicoMl2TestCase

from calico.openstack import keys

pytestmark = pytest.mark.openstack


class TestSecurityGroups(CalicoMl2TestCase):
    def test_rules_create_update_delete(self) -> None:
        sg = self._make_security_group(self.fmt, name="web")["security_group"]
        policy = self.etcd_json(self.policy_key(sg["id"]))
        assert policy["spec"]["selector"] == f"has({keys.sg_label(sg['id'])})"
        assert policy["spec"]["types"] == ["Ingress", "Egress"]
        # (This test database has no default-rule templates, so a new group has no rules.)
        assert sg["security_group_rules"] == []
        assert policy["spec"]["ingress"] == policy["spec"]["egress"] == []

        out = self.create_sg_rule(sg["id"], direction="egress", ethertype="IPv6")
        assert self.etcd_json(self.policy_key(sg["id"]))["spec"]["egress"] == [
            {"action": "Allow", "ipVersion": 6}
        ]
        self.delete_sg_rule(out["id"])
        assert self.etcd_json(self.policy_key(sg["id"]))["spec"]["egress"] == []

        ssh = self.create_sg_rule(
            sg["id"],
            direction="ingress",
            protocol="tcp",
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix="198.18.0.0/16",
        )
        peers = self.create_sg_rule(sg["id"], direction="ingress", remote_group_id=sg["id"])
        ingress = self.etcd_json(self.policy_key(sg["id"]))["spec"]["ingress"]
        assert {
            "action": "Allow",
            "ipVersion": 4,
            "protocol": "TCP",
            "source": {"nets": ["198.18.0.0/16"]},
            "destination": {"ports": [22]},
        } in ingress
        assert {
            "action": "Allow",
            "ipVersion": 4,
            "source": {"selector": f"has({keys.sg_label(sg['id'])})"},
        } in ingress
        assert len(ingress) == 2

        self.delete_sg_rule(ssh["id"])
        ingress = self.etcd_json(self.policy_key(sg["id"]))["spec"]["ingress"]
        assert [r.get("source") for r in ingress] == [
            {"selector": f"has({keys.sg_label(sg['id'])})"}
        ]
        self.delete_sg_rule(peers["id"])
        assert self.etcd_json(self.policy_key(sg["id"]))["spec"]["ingress"] == []

        self._delete("security-groups", sg["id"])
        assert self.backend.get(self.policy_key(sg["id"])) is None

    def test_port_security_groups_and_rename(self) -> None:
        self.felix_heartbeat(HOST1)
        sg = self._make_security_group(self.fmt, name="web")["security_group"]
        net = self.make_net()
        self.make_subnet(net)
        port = self.make_vm_port(net, security_groups=[sg["id"]])
        key = self.wep_key(HOST1, "vm-1", port["id"])
        labels = self.etcd_json(key)["metadata"]["labels"]
        assert labels[keys.sg_label(sg["id"])] == "web"
        assert labels[keys.SG_NAME_LABEL_PREFIX + "web"] == sg["id"]

        # Renaming the group relabels its members.
        self._update("security-groups", sg["id"], {"security_group": {"name": "frontend"}})
        labels = self.etcd_json(key)["metadata"]["labels"]
        assert labels[keys.sg_label(sg["id"])] == "frontend"
        assert keys.SG_NAME_LABEL_PREFIX + "web" not in labels

        # Changing the port's groups is a port update: its labels follow.
        other = self._make_security_group(self.fmt, name="db")["security_group"]
        self.update_port(port["id"], security_groups=[other["id"]])
        labels = self.etcd_json(key)["metadata"]["labels"]
        assert keys.sg_label(sg["id"]) not in labels
        assert labels[keys.sg_label(other["id"])] == "db"


class TestFloatingIPs(CalicoMl2TestCase):
    def test_floating_ip_associate_and_disassociate(self) -> None:
        self.felix_heartbeat(HOST1)
        ext = self.make_net(name="public", **{"router:external": True})
        self.make_subnet(ext, cidr="198.19.0.0/24")
        net = self.make_net("local", name="private")
        subnet = self.make_subnet(net, cidr="198.18.5.0/24")
        port = self.make_vm_port(net)
        l3 = self.l3()
        project = port["project_id"]
        router = l3.create_router(
            self.admin,
            {
                "router": {
                    "name": "r1",
                    "admin_state_up": True,
                    "project_id": project,
                    "external_gateway_info": {"network_id": ext["id"]},
                }
            },
        )
        l3.add_router_interface(self.admin, router["id"], {"subnet_id": subnet["id"]})
        fip = l3.create_floatingip(
            self.admin,
            {
                "floatingip": {
                    "floating_network_id": ext["id"],
                    "port_id": port["id"],
                    "project_id": project,
                }
            },
        )
        key = self.wep_key(HOST1, "vm-1", port["id"])
        internal = port["fixed_ips"][0]["ip_address"]
        assert self.etcd_json(key)["spec"]["ipNATs"] == [
            {"internalIP": internal, "externalIP": fip["floating_ip_address"]}
        ]

        l3.update_floatingip(self.admin, fip["id"], {"floatingip": {"port_id": None}})
        assert "ipNATs" not in self.etcd_json(key)["spec"]

        l3.update_floatingip(self.admin, fip["id"], {"floatingip": {"port_id": port["id"]}})
        assert len(self.etcd_json(key)["spec"]["ipNATs"]) == 1
        l3.delete_floatingip(self.admin, fip["id"])
        assert "ipNATs" not in self.etcd_json(key)["spec"]
