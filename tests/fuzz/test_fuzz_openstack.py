"""Neutron dicts: a port or a security group with its rules becomes a resource or raises
TranslationError naming the Neutron object and field."""

from __future__ import annotations

from typing import Any

from _fuzz import clean, fuzz, mutated
from hypothesis import assume, given
from hypothesis import strategies as st

from calico.openstack.translate import (
    PortExtras,
    TranslationError,
    endpoint_for_port,
    policy_for_security_group,
)

SG = "5e1f0000-0000-0000-0000-000000000001"
SUBNETS: dict[str, Any] = {
    "sub4": {"id": "sub4", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "ip_version": 4},
    "sub6": {"id": "sub6", "cidr": "2001:db8::/64", "gateway_ip": "2001:db8::1", "ip_version": 6},
}
PORT: dict[str, Any] = {
    "id": "0123abcd-4567-89ef-0123-456789abcdef",
    "device_id": "9f1c2d3e-aaaa-bbbb-cccc-000000000001",
    "device_owner": "compute:nova",
    "binding:host_id": "compute-1",
    "binding:vif_type": "tap",
    "mac_address": "fa:16:3e:00:00:01",
    "network_id": "net-1",
    "project_id": "c0ffee00c0ffee00c0ffee00c0ffee00",
    "admin_state_up": True,
    "fixed_ips": [
        {"subnet_id": "sub4", "ip_address": "10.0.0.5"},
        {"subnet_id": "sub6", "ip_address": "2001:db8::5"},
    ],
    "security_groups": [SG],
    "allowed_address_pairs": [{"ip_address": "10.0.0.64/26", "mac_address": "fa:16:3e:00:00:02"}],
    "dns_assignment": [{"hostname": "vm-1", "fqdn": "vm-1.example.org."}],
}
EXTRAS: dict[str, Any] = {
    "subnets": SUBNETS,
    "security_group_names": {SG: "web"},
    "network_name": "net one",
    "project_name": "demo",
    "project_parent_id": "default",
    "floating_ips": [{"fixed_ip_address": "10.0.0.5", "floating_ip_address": "203.0.113.5"}],
}
RULES: list[dict[str, Any]] = [
    {
        "id": "r1",
        "security_group_id": SG,
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "port_range_min": 80,
        "port_range_max": 90,
        "remote_ip_prefix": "198.18.0.0/16",
        "remote_group_id": None,
    },
    {
        "id": "r2",
        "security_group_id": SG,
        "direction": "egress",
        "ethertype": "IPv6",
        "protocol": "icmp",
        "port_range_min": 8,
        "port_range_max": 0,
        "remote_ip_prefix": None,
        "remote_group_id": SG,
    },
]


def _region() -> st.SearchStrategy[str | None]:
    # The region comes from the driver's settings, validated when they load (calico.openstack.settings).
    return st.sampled_from([None, "", "europe-1", "r" * 46])


@fuzz
@given(mutated(PORT), _region())
def test_near_valid_ports(port: dict[str, Any], region: str | None) -> None:
    assume(isinstance(port, dict))  # Neutron hands the driver a dict
    clean(lambda: endpoint_for_port(port, PortExtras(**EXTRAS), region), TranslationError)


@fuzz
@given(mutated({"subnets": SUBNETS, "floating_ips": EXTRAS["floating_ips"]}))
def test_near_valid_subnets_and_floating_ips(raw: dict[str, Any]) -> None:
    # The driver builds PortExtras (typed names); the subnet and floating IP dicts are Neutron's.
    subnets, fips = raw.get("subnets"), raw.get("floating_ips")
    assume(isinstance(subnets, dict) and isinstance(fips, list))
    extras = PortExtras(**{**EXTRAS, "subnets": subnets, "floating_ips": fips})
    clean(lambda: endpoint_for_port(PORT, extras, None), TranslationError)


@fuzz
@given(mutated({"sg": {"id": SG, "name": "web"}, "rules": RULES}), _region())
def test_near_valid_security_groups(doc: dict[str, Any], region: str | None) -> None:
    sg, rules = doc.get("sg"), doc.get("rules")
    assume(isinstance(sg, dict) and isinstance(rules, list))
    assume(all(isinstance(r, dict) for r in rules))  # Neutron's rules are dicts
    clean(lambda: policy_for_security_group(sg, rules, region), TranslationError)
