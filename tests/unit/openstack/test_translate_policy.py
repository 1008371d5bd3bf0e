"""Neutron security groups and rules -> NetworkPolicies."""

from __future__ import annotations

from typing import Any

import pytest

from calico.openstack.translate import TranslationError, policy_for_security_group

SG = "5e1f0000-0000-0000-0000-000000000001"
SG2 = "5e1f0000-0000-0000-0000-000000000002"
HAS_SG = f"has(sg.projectcalico.org/openstack-{SG})"
HAS_SG2 = f"has(sg.projectcalico.org/openstack-{SG2})"


def rule(rule_id: str = "r1", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": rule_id,
        "security_group_id": SG,
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "remote_group_id": None,
        "remote_address_group_id": None,
    }
    base.update(fields)
    return base


def policy(
    ingress: list[dict[str, Any]], egress: list[dict[str, Any]], namespace: str = "openstack"
) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"ossg.default.{SG}", "namespace": namespace},
        "spec": {
            "tier": "default",
            "selector": HAS_SG,
            "types": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def allow(version: int = 4, **fields: Any) -> dict[str, Any]:
    return {"action": "Allow", "ipVersion": version, **fields}


IN, OUT = "ingress", "egress"

# (case, Neutron rule fields, direction it lands in, Calico rule)
RULE_CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("ingress any IPv4", {}, IN, allow()),
    ("egress any IPv6", {"direction": "egress", "ethertype": "IPv6"}, OUT, allow(6)),
    ("protocol 'any'", {"protocol": "any"}, IN, allow()),
    ("protocol 0", {"protocol": 0}, IN, allow()),
    ("protocol -1 (legacy)", {"protocol": -1}, IN, allow()),
    (
        "tcp port",
        {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
        IN,
        allow(protocol="TCP", destination={"ports": [22]}),
    ),
    (
        "tcp port, max unset",
        {"protocol": "tcp", "port_range_min": 80},
        IN,
        allow(protocol="TCP", destination={"ports": [80]}),
    ),
    (
        "tcp range from a prefix",
        {
            "protocol": "tcp",
            "port_range_min": 1000,
            "port_range_max": 2000,
            "remote_ip_prefix": "192.168.0.0/16",
        },
        IN,
        allow(
            protocol="TCP",
            source={"nets": ["192.168.0.0/16"]},
            destination={"ports": ["1000:2000"]},
        ),
    ),
    (
        "tcp all ports",
        {"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535},
        IN,
        allow(protocol="TCP", destination={"ports": ["1:65535"]}),
    ),
    ("tcp no ports", {"protocol": "TCP"}, IN, allow(protocol="TCP")),
    (
        "udp egress to a prefix",
        {
            "direction": "egress",
            "protocol": "udp",
            "port_range_min": 53,
            "port_range_max": 53,
            "remote_ip_prefix": "10.0.0.2/32",
        },
        OUT,
        allow(protocol="UDP", destination={"nets": ["10.0.0.2/32"], "ports": [53]}),
    ),
    (
        "udp egress ports, no peer",
        {"direction": "egress", "protocol": "udp", "port_range_min": 67, "port_range_max": 68},
        OUT,
        allow(protocol="UDP", destination={"ports": ["67:68"]}),
    ),
    (
        "sctp",
        {"protocol": "sctp", "port_range_min": 3868, "port_range_max": 3868},
        IN,
        allow(protocol="SCTP", destination={"ports": [3868]}),
    ),
    ("udplite", {"protocol": "udplite"}, IN, allow(protocol="UDPLite")),
    (
        "numeric tcp as a string",
        {"protocol": "6", "port_range_min": 443, "port_range_max": 443},
        IN,
        allow(protocol=6, destination={"ports": [443]}),
    ),
    ("numeric udp", {"protocol": 17}, IN, allow(protocol=17)),
    ("gre by name", {"protocol": "gre"}, IN, allow(protocol=47)),
    ("vrrp by name, IPv6", {"protocol": "vrrp", "ethertype": "IPv6"}, IN, allow(6, protocol=112)),
    ("other number", {"protocol": 132}, IN, allow(protocol=132)),
    ("icmp any", {"protocol": "icmp"}, IN, allow(protocol="ICMP")),
    (
        "icmp any (-1)",
        {"protocol": "icmp", "port_range_min": -1, "port_range_max": -1},
        IN,
        allow(protocol="ICMP"),
    ),
    (
        "icmp type",
        {"protocol": "icmp", "port_range_min": 8},
        IN,
        allow(protocol="ICMP", icmp={"type": 8}),
    ),
    (
        "icmp type and code",
        {"protocol": "icmp", "port_range_min": 3, "port_range_max": 4},
        IN,
        allow(protocol="ICMP", icmp={"type": 3, "code": 4}),
    ),
    (
        "icmp type 0 code 0",
        {"protocol": "icmp", "port_range_min": 0, "port_range_max": 0},
        IN,
        allow(protocol="ICMP", icmp={"type": 0, "code": 0}),
    ),
    (
        "icmp number 1",
        {"protocol": 1, "port_range_min": 8},
        IN,
        allow(protocol="ICMP", icmp={"type": 8}),
    ),
    (
        "icmp in an IPv6 rule means ICMPv6",
        {"protocol": "icmp", "ethertype": "IPv6", "port_range_min": 128},
        IN,
        allow(6, protocol="ICMPv6", icmp={"type": 128}),
    ),
    (
        "ipv6-icmp",
        {"protocol": "ipv6-icmp", "ethertype": "IPv6", "port_range_min": 135, "port_range_max": 0},
        IN,
        allow(6, protocol="ICMPv6", icmp={"type": 135, "code": 0}),
    ),
    (
        "icmpv6 (legacy)",
        {"protocol": "icmpv6", "ethertype": "IPv6"},
        IN,
        allow(6, protocol="ICMPv6"),
    ),
    (
        "icmpv6 number 58 egress",
        {"protocol": 58, "ethertype": "IPv6", "direction": "egress"},
        OUT,
        allow(6, protocol="ICMPv6"),
    ),
    (
        "icmp from a remote group",
        {"protocol": "icmp", "remote_group_id": SG2},
        IN,
        allow(protocol="ICMP", source={"selector": HAS_SG2}),
    ),
    ("remote group ingress", {"remote_group_id": SG}, IN, allow(source={"selector": HAS_SG})),
    (
        "remote group egress with port",
        {
            "direction": "egress",
            "protocol": "tcp",
            "port_range_min": 5432,
            "port_range_max": 5432,
            "remote_group_id": SG2,
        },
        OUT,
        allow(protocol="TCP", destination={"selector": HAS_SG2, "ports": [5432]}),
    ),
    (
        "remote group ingress with port",
        {"protocol": "tcp", "port_range_min": 5432, "port_range_max": 5432, "remote_group_id": SG2},
        IN,
        allow(protocol="TCP", source={"selector": HAS_SG2}, destination={"ports": [5432]}),
    ),
    (
        "prefix with host bits is masked",
        {"remote_ip_prefix": "10.0.0.5/24"},
        IN,
        allow(source={"nets": ["10.0.0.0/24"]}),
    ),
    (
        "bare address prefix",
        {"remote_ip_prefix": "10.0.0.5"},
        IN,
        allow(source={"nets": ["10.0.0.5/32"]}),
    ),
    (
        "any-address prefix",
        {"remote_ip_prefix": "0.0.0.0/0"},
        IN,
        allow(source={"nets": ["0.0.0.0/0"]}),
    ),
    (
        "IPv6 prefix egress",
        {"direction": "egress", "ethertype": "IPv6", "remote_ip_prefix": "2001:db8::/32"},
        OUT,
        allow(6, destination={"nets": ["2001:db8::/32"]}),
    ),
]


@pytest.mark.parametrize(
    ("fields", "direction", "calico"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_rule_translation(fields: dict[str, Any], direction: str, calico: dict[str, Any]) -> None:
    result = policy_for_security_group({"id": SG}, [rule(**fields)], None).to_dict()
    want = policy([calico], []) if direction == IN else policy([], [calico])
    assert result == want


# (case, Neutron rule fields, message after "security group <SG> rule r1: ")
RULE_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "address group",
        {"remote_address_group_id": "ag-1"},
        "remote_address_group_id: address groups are not supported",
    ),
    ("bad direction", {"direction": "inbound"}, "direction: 'inbound' is not ingress or egress"),
    ("bad ethertype", {"ethertype": "IPv5"}, "ethertype: 'IPv5' is not IPv4 or IPv6"),
    ("unknown protocol", {"protocol": "bogus"}, "protocol: 'bogus' is not a known protocol"),
    ("protocol out of range", {"protocol": 256}, "protocol: 256 is not a known protocol"),
    (
        "ports on a portless protocol",
        {"protocol": "dccp", "port_range_min": 5000, "port_range_max": 5000},
        "port_range_min/port_range_max (destination.ports): rules that specify ports must set protocol to TCP, UDP or SCTP",
    ),
    (
        "port 0",
        {"protocol": "tcp", "port_range_min": 0, "port_range_max": 100},
        'port_range_min/port_range_max (destination.ports[0]): "0:100" is not a valid port range',
    ),
    (
        "backwards range",
        {"protocol": "udp", "port_range_min": 90, "port_range_max": 80},
        'destination.ports[0]): "90:80" is not a valid port range: minimum port 90 is greater',
    ),
    (
        "max without min",
        {"protocol": "tcp", "port_range_max": 80},
        "port_range_min: port_range_max is set without port_range_min",
    ),
    (
        "non-integer port",
        {"protocol": "tcp", "port_range_min": "http"},
        "port_range_min: 'http' is not an integer",
    ),
    (
        "icmp type too big",
        {"protocol": "icmp", "port_range_min": 255},
        "port_range_min/port_range_max (ICMP type/code) (icmp.type)",
    ),
    (
        "icmp code without type",
        {"protocol": "icmp", "port_range_max": 0},
        "(icmp.code): ICMP code specified without an ICMP type",
    ),
    (
        "ipv6-icmp in an IPv4 rule",
        {"protocol": "ipv6-icmp"},
        "ethertype/protocol (ipVersion): must be 6 with protocol ICMPv6",
    ),
    (
        "prefix of the other family",
        {"remote_ip_prefix": "2001:db8::/32"},
        "remote_ip_prefix (source.nets): rule IP version doesn't match CIDR version",
    ),
    # Found by tests/fuzz: an unhashable ethertype was a TypeError.
    ("ethertype a list", {"ethertype": ["IPv4"]}, "ethertype: ['IPv4'] is not IPv4 or IPv6"),
    (
        "prefix not a CIDR",
        {"remote_ip_prefix": "10.0.0/33"},
        "remote_ip_prefix: '10.0.0/33' is not a CIDR",
    ),
    (
        "remote group not a label",
        {"remote_group_id": "bad group"},
        "remote_group_id (source.selector)",
    ),
]


@pytest.mark.parametrize(
    ("fields", "message"), [c[1:] for c in RULE_REJECTS], ids=[c[0] for c in RULE_REJECTS]
)
def test_rule_rejects_name_the_rule_and_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError) as info:
        policy_for_security_group({"id": SG}, [rule(**fields)], None)
    assert str(info.value).startswith(f"security group {SG} rule r1: ")
    assert message in str(info.value)


def test_default_security_group() -> None:
    """Neutron's default group: all egress, ingress from members of the group."""
    rules = [
        rule("e4", direction="egress"),
        rule("e6", direction="egress", ethertype="IPv6"),
        rule("i4", remote_group_id=SG),
        rule("i6", ethertype="IPv6", remote_group_id=SG),
    ]
    result = policy_for_security_group({"id": SG, "name": "default"}, rules, None)
    assert result.to_dict() == policy(
        [allow(source={"selector": HAS_SG}), allow(6, source={"selector": HAS_SG})],
        [allow(), allow(6)],
    )


def test_group_without_rules_denies_both_ways() -> None:
    result = policy_for_security_group({"id": SG, "name": "empty"}, [], None)
    assert result.to_dict() == policy([], [])


def test_ingress_only_group_still_polices_egress() -> None:
    result = policy_for_security_group(
        {"id": SG}, [rule(protocol="tcp", port_range_min=22, port_range_max=22)], None
    )
    assert result.spec.types == ["Ingress", "Egress"]
    assert result.to_dict() == policy([allow(protocol="TCP", destination={"ports": [22]})], [])


def test_rules_keep_order_and_skip_other_groups() -> None:
    rules = [
        rule("a", protocol="tcp", port_range_min=22, port_range_max=22),
        rule("other", security_group_id=SG2, protocol="tcp", port_range_min=80, port_range_max=80),
        rule("b", protocol="udp", port_range_min=53, port_range_max=53),
        rule("c", direction="egress", remote_ip_prefix="10.0.0.0/8"),
    ]
    result = policy_for_security_group({"id": SG}, rules, None)
    assert result.to_dict() == policy(
        [
            allow(protocol="TCP", destination={"ports": [22]}),
            allow(protocol="UDP", destination={"ports": [53]}),
        ],
        [allow(destination={"nets": ["10.0.0.0/8"]})],
    )


def test_bad_rule_of_another_group_is_ignored() -> None:
    result = policy_for_security_group(
        {"id": SG}, [rule("x", security_group_id=SG2, direction="sideways")], None
    )
    assert result.to_dict() == policy([], [])


def test_policy_in_a_region_namespace() -> None:
    result = policy_for_security_group({"id": SG}, [rule()], "europe-1")
    assert result.to_dict() == policy([allow()], [], namespace="openstack-region-europe-1")


@pytest.mark.parametrize(
    ("sg", "message"),
    [
        ({}, "security group: id: required field is missing"),
        ({"id": "Not_A_Name"}, "security group Not_A_Name: id (metadata.name)"),
    ],
)
def test_security_group_rejects(sg: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError) as info:
        policy_for_security_group(sg, [], None)
    assert message in str(info.value)
