"""Neutron ports and subnets -> WorkloadEndpoints and DHCP subnet records."""

from __future__ import annotations

from typing import Any

import pytest

from calico.model.endpoints import WorkloadEndpoint
from calico.openstack.translate import (
    PortExtras,
    TranslationError,
    dhcp_subnet_data,
    endpoint_fixed_ips,
    endpoint_for_port,
    is_endpoint_port,
    port_host,
    sanitize_label_value,
)

PORT_ID = "0123abcd-4567-89ef-0123-456789abcdef"
VM = "9f1c2d3e-aaaa-bbbb-cccc-000000000001"
SG1 = "5e1f0000-0000-0000-0000-000000000001"
SG2 = "5e1f0000-0000-0000-0000-000000000002"
NAME = f"compute--1-openstack-{VM.replace('-', '--')}-{PORT_ID.replace('-', '--')}"

SUBNETS: dict[str, dict[str, Any]] = {
    "sub4": {"id": "sub4", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "ip_version": 4},
    "sub4b": {"id": "sub4b", "cidr": "10.9.0.0/24", "gateway_ip": "10.9.0.1", "ip_version": 4},
    "sub4-nogw": {"id": "sub4-nogw", "cidr": "10.8.0.0/24", "gateway_ip": None, "ip_version": 4},
    "sub6": {"id": "sub6", "cidr": "2001:db8::/64", "gateway_ip": "2001:db8::1", "ip_version": 6},
}


def make_port(**fields: Any) -> dict[str, Any]:
    port: dict[str, Any] = {
        "id": PORT_ID,
        "device_id": VM,
        "device_owner": "compute:nova",
        "binding:host_id": "compute-1",
        "binding:vif_type": "tap",
        "mac_address": "fa:16:3e:00:00:01",
        "network_id": "net-1",
        "project_id": "c0ffee00c0ffee00c0ffee00c0ffee00",
        "admin_state_up": True,
        "fixed_ips": [{"subnet_id": "sub4", "ip_address": "10.0.0.5"}],
        "security_groups": [],
        "allowed_address_pairs": [],
    }
    port.update(fields)
    return port


def ip4(addr: str, subnet: str = "sub4") -> dict[str, str]:
    return {"subnet_id": subnet, "ip_address": addr}


def ip6(addr: str) -> dict[str, str]:
    return {"subnet_id": "sub6", "ip_address": addr}


def fip(internal: str | None, external: str) -> dict[str, Any]:
    return {"fixed_ip_address": internal, "floating_ip_address": external, "port_id": PORT_ID}


def expected(
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str = "openstack",
) -> dict[str, Any]:
    """The base port's endpoint with spec fields, labels and annotations replaced/added."""
    base_spec: dict[str, Any] = {
        "orchestrator": "openstack",
        "workload": VM,
        "node": "compute-1",
        "endpoint": PORT_ID,
        "interfaceName": "tap0123abcd-45",
        "mac": "fa:16:3e:00:00:01",
        "ipNetworks": ["10.0.0.5/32"],
        "ipv4Gateway": "10.0.0.1",
    }
    base_spec.update(spec or {})
    all_labels = {
        "projectcalico.org/namespace": namespace,
        "projectcalico.org/orchestrator": "openstack",
        "projectcalico.org/openstack-project-id": "c0ffee00c0ffee00c0ffee00c0ffee00",
    }
    all_labels.update(labels or {})
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": all_labels,
            "annotations": annotations
            if annotations is not None
            else {"openstack.projectcalico.org/network-id": "net-1"},
        },
        "spec": {k: v for k, v in base_spec.items() if v is not None},
    }


NET_ANN = {"openstack.projectcalico.org/network-id": "net-1"}
SG_LABEL1 = f"sg.projectcalico.org/openstack-{SG1}"
SG_LABEL2 = f"sg.projectcalico.org/openstack-{SG2}"

# (case, port fields, PortExtras fields beyond subnets, expected resource)
PORT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("ipv4", {}, {}, expected()),
    (
        "ipv6 only",
        {"fixed_ips": [ip6("2001:db8::5")]},
        {},
        expected(
            {"ipNetworks": ["2001:db8::5/128"], "ipv4Gateway": None, "ipv6Gateway": "2001:db8::1"}
        ),
    ),
    (
        "dual stack, IPv6 normalised",
        {"fixed_ips": [ip4("10.0.0.5"), ip6("2001:0DB8:0::0005")]},
        {},
        expected({"ipNetworks": ["10.0.0.5/32", "2001:db8::5/128"], "ipv6Gateway": "2001:db8::1"}),
    ),
    ("no fixed IPs", {"fixed_ips": []}, {}, expected({"ipNetworks": [], "ipv4Gateway": None})),
    (
        "subnet without gateway",
        {"fixed_ips": [ip4("10.8.0.5", "sub4-nogw")]},
        {},
        expected({"ipNetworks": ["10.8.0.5/32"], "ipv4Gateway": None}),
    ),
    (
        "last gateway per family wins",
        {"fixed_ips": [ip4("10.0.0.5"), ip4("10.9.0.5", "sub4b")]},
        {},
        expected({"ipNetworks": ["10.0.0.5/32", "10.9.0.5/32"], "ipv4Gateway": "10.9.0.1"}),
    ),
    (
        "duplicate fixed IP listed once",
        {"fixed_ips": [ip4("10.0.0.5"), ip4("10.0.0.5")]},
        {},
        expected(),
    ),
    (
        "allowed address pairs",
        {
            "allowed_address_pairs": [
                {"ip_address": "10.0.0.50", "mac_address": "fa:16:3e:00:00:01"},
                {"ip_address": "10.1.0.0/24"},
                {"ip_address": "2001:db8::50"},
                {"ip_address": "10.2.0.7/16"},
                {"ip_address": "10.0.0.60/32"},
            ]
        },
        {},
        expected(
            {
                "ipNetworks": ["10.0.0.5/32", "10.0.0.50/32", "2001:db8::50/128", "10.0.0.60/32"],
                "allowedIps": ["10.0.0.50/32", "2001:db8::50/128", "10.0.0.60/32"],
                "allowSpoofedSourcePrefixes": ["10.1.0.0/24", "10.2.0.0/16"],
            }
        ),
    ),
    (
        "address pair equal to the fixed IP, or repeated, is listed once",
        {
            "allowed_address_pairs": [
                {"ip_address": "10.0.0.5"},
                {"ip_address": "10.0.0.50"},
                {"ip_address": "10.0.0.50/32", "mac_address": "fa:16:3e:00:00:02"},
            ]
        },
        {},
        expected({"ipNetworks": ["10.0.0.5/32", "10.0.0.50/32"], "allowedIps": ["10.0.0.50/32"]}),
    ),
    (
        "floating IP",
        {},
        {"floating_ips": [fip("10.0.0.5", "172.24.4.10")]},
        expected({"ipNATs": [{"internalIP": "10.0.0.5", "externalIP": "172.24.4.10"}]}),
    ),
    (
        "floating IPs: foreign and disassociated dropped, pair address kept",
        {"allowed_address_pairs": [{"ip_address": "10.0.0.50"}]},
        {
            "floating_ips": [
                fip("10.0.0.99", "172.24.4.11"),
                fip(None, "172.24.4.12"),
                fip("10.0.0.50", "172.24.4.13"),
                fip("10.0.0.5", "172.24.4.10"),
            ]
        },
        expected(
            {
                "ipNetworks": ["10.0.0.5/32", "10.0.0.50/32"],
                "allowedIps": ["10.0.0.50/32"],
                "ipNATs": [
                    {"internalIP": "10.0.0.50", "externalIP": "172.24.4.13"},
                    {"internalIP": "10.0.0.5", "externalIP": "172.24.4.10"},
                ],
            }
        ),
    ),
    (
        "security group labels",
        {"security_groups": [SG1, SG2]},
        {"security_group_names": {SG1: "web"}},
        expected(
            labels={SG_LABEL1: "web", "sg-name.projectcalico.org/openstack-web": SG1, SG_LABEL2: ""}
        ),
    ),
    (
        "security group names sanitised and truncated to 27",
        {"security_groups": [SG1, SG2]},
        {"security_group_names": {SG1: "-web servers!", SG2: "a" * 26 + "-bcdef"}},
        expected(
            labels={
                SG_LABEL1: "web_servers",
                "sg-name.projectcalico.org/openstack-web_servers": SG1,
                SG_LABEL2: "a" * 26,
                "sg-name.projectcalico.org/openstack-" + "a" * 26: SG2,
            }
        ),
    ),
    (
        "project and network labels",
        {},
        {
            "project_name": "Demo Project",
            "project_parent_id": "default",
            "network_name": "ext net/1",
        },
        expected(
            labels={
                "projectcalico.org/openstack-project-name": "Demo_Project",
                "projectcalico.org/openstack-project-parent-id": "default",
                "projectcalico.org/openstack-network-name": "ext_net_1",
            }
        ),
    ),
    (
        "empty names still label, absent parent does not",
        {},
        {"project_name": "", "network_name": "***"},
        expected(
            labels={
                "projectcalico.org/openstack-project-name": "",
                "projectcalico.org/openstack-network-name": "",
            }
        ),
    ),
    (
        "long network name truncated to 63",
        {},
        {"network_name": "n" * 70},
        expected(labels={"projectcalico.org/openstack-network-name": "n" * 63}),
    ),
    (
        "old port with tenant_id only",
        {"project_id": None, "tenant_id": "c0ffee00c0ffee00c0ffee00c0ffee00"},
        {},
        expected(),
    ),
    (
        "port without a project",
        {"project_id": None},
        {},
        {
            **expected(),
            "metadata": {
                **expected()["metadata"],
                "labels": {
                    "projectcalico.org/namespace": "openstack",
                    "projectcalico.org/orchestrator": "openstack",
                },
            },
        },
    ),
    (
        "fqdn from dns_assignment",
        {
            "dns_assignment": [
                {"hostname": "vm1", "ip_address": "10.0.0.5", "fqdn": "vm1.example.org."}
            ]
        },
        {},
        expected(annotations={**NET_ANN, "openstack.projectcalico.org/fqdn": "vm1.example.org."}),
    ),
    (
        "fqdn from extras wins",
        {"dns_assignment": [{"fqdn": "old.example.org."}]},
        {"fqdn": "vm1.example.org"},
        expected(annotations={**NET_ANN, "openstack.projectcalico.org/fqdn": "vm1.example.org"}),
    ),
    ("admin down is written like any bound port", {"admin_state_up": False}, {}, expected()),
]


@pytest.mark.parametrize(
    ("port_fields", "extras", "want"), [c[1:] for c in PORT_CASES], ids=[c[0] for c in PORT_CASES]
)
def test_endpoint_for_port(
    port_fields: dict[str, Any], extras: dict[str, Any], want: dict[str, Any]
) -> None:
    wep = endpoint_for_port(make_port(**port_fields), PortExtras(subnets=SUBNETS, **extras), None)
    assert wep.to_dict() == want


def test_endpoint_in_a_region_namespace() -> None:
    wep = endpoint_for_port(make_port(), PortExtras(subnets=SUBNETS), "europe-1")
    assert wep.to_dict() == expected(namespace="openstack-region-europe-1")


def test_fixed_ip_order_from_neutron_does_not_change_the_endpoint() -> None:
    ips = [ip6("2001:db8::5"), ip4("10.9.0.7", "sub4b"), ip4("10.0.0.5"), ip6("2001:db8::2")]
    weps = [
        endpoint_for_port(make_port(fixed_ips=order), PortExtras(subnets=SUBNETS), None)
        for order in (ips, ips[::-1], ips[1:] + ips[:1])
    ]
    assert weps[0].spec.ipNetworks == [
        "10.0.0.5/32",
        "10.9.0.7/32",
        "2001:db8::2/128",
        "2001:db8::5/128",
    ]
    assert weps[0].spec.ipv4Gateway == "10.9.0.1"  # the last (highest) IPv4 address's subnet
    assert all(w.to_dict() == weps[0].to_dict() for w in weps[1:])


def test_fixed_ips_exclude_address_pairs() -> None:
    port = make_port(
        fixed_ips=[ip4("10.0.0.5"), ip6("2001:db8::5")],
        allowed_address_pairs=[
            {"ip_address": "10.0.0.50"},
            {"ip_address": "10.1.0.0/24"},
            {"ip_address": "2001:db8::50"},
        ],
    )
    wep = endpoint_for_port(port, PortExtras(subnets=SUBNETS), None)
    assert endpoint_fixed_ips(wep) == ["10.0.0.5", "2001:db8::5"]


def test_fixed_ips_of_an_endpoint_written_by_networking_calico() -> None:
    """Its driver always writes allowedIps (maybe empty), in any address spelling."""
    spec = {
        "orchestrator": "openstack", "workload": "vm1", "node": "h1", "endpoint": "p1",
        "interfaceName": "tapp1", "mac": "fa:16:3e:00:00:01",
        "ipNetworks": ["10.0.0.5/32", "2001:db8::5/128", "10.0.0.50/32", "2001:DB8::50/128"],
        "allowedIps": ["10.0.0.50/32", "2001:db8::50/128"],
    }  # fmt: skip
    doc = {"metadata": {"name": "h1-openstack-vm1-p1", "namespace": "openstack"}, "spec": spec}
    wep = WorkloadEndpoint.model_validate(doc)
    assert endpoint_fixed_ips(wep) == ["10.0.0.5", "2001:db8::5"]
    wep = WorkloadEndpoint.model_validate({**doc, "spec": {**spec, "allowedIps": []}})
    assert endpoint_fixed_ips(wep) == ["10.0.0.5", "2001:db8::5", "10.0.0.50", "2001:DB8::50"]


# (case, port fields, PortExtras fields beyond subnets, message fragment)
PORT_REJECTS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "unbound: no host",
        {"binding:host_id": ""},
        {},
        f"port {PORT_ID}: binding:host_id: port is not bound",
    ),
    (
        "unbound: vif_type",
        {"binding:vif_type": "unbound"},
        {},
        f"port {PORT_ID}: binding:host_id: port is not bound",
    ),
    (
        "not a VM port",
        {"device_owner": "network:dhcp"},
        {},
        f"port {PORT_ID}: device_owner: 'network:dhcp' is not a compute: port",
    ),
    ("no device", {"device_id": ""}, {}, f"port {PORT_ID}: device_id: required field is missing"),
    (
        "unknown subnet",
        {"fixed_ips": [ip4("10.0.0.5", "gone")]},
        {},
        f"port {PORT_ID}: fixed_ips[0].subnet_id: subnet 'gone' unknown",
    ),
    (
        "bad fixed IP",
        {"fixed_ips": [ip4("10.0.0.300")]},
        {},
        f"port {PORT_ID}: fixed_ips[0].ip_address: '10.0.0.300' is not an IP address",
    ),
    # Malformed Neutron records (found by tests/fuzz): a TranslationError, not a TypeError.
    ("fixed_ips not a list", {"fixed_ips": 5}, {}, "fixed_ips: 5 is not a list of objects"),
    ("fixed IP null", {"fixed_ips": [None]}, {}, "fixed_ips: [null] is not a list of objects"),
    (
        "subnet_id a list",
        {"fixed_ips": [{"subnet_id": ["sub4"], "ip_address": "10.0.0.5"}]},
        {},
        "fixed_ips[0].subnet_id: subnet ['sub4'] unknown",
    ),
    ("subnet record not an object", {}, {"subnets": {"sub4": []}}, "subnet 'sub4' unknown"),
    ("address pair null", {"allowed_address_pairs": [None]}, {}, "allowed_address_pairs: [null]"),
    ("floating IP null", {}, {"floating_ips": [None]}, "floating_ips: [null] is not a list"),
    ("dns_assignment an object", {"dns_assignment": {"fqdn": "a."}}, {}, "dns_assignment: {"),
    ("dns_assignment true", {"dns_assignment": True}, {}, "dns_assignment: true is not a list"),
    ("security group null", {"security_groups": [None]}, {}, "security_groups: [null] is not"),
    ("security groups a number", {"security_groups": 1}, {}, "security_groups: 1 is not a list"),
    (
        "bad address pair",
        {"allowed_address_pairs": [{"ip_address": "nonsense"}]},
        {},
        f"port {PORT_ID}: allowed_address_pairs[0].ip_address: 'nonsense' is not an IP or CIDR",
    ),
    (
        "bad mac",
        {"mac_address": "fa:16:3e"},
        {},
        f"port {PORT_ID}: mac_address (spec.mac): 'fa:16:3e' is not a valid MAC address",
    ),
    (
        "host not a DNS name",
        {"binding:host_id": "Compute_1"},
        {},
        f"port {PORT_ID}: binding:host_id/device_id/id (metadata.name)",
    ),
    (
        "floating IP family mismatch",
        {},
        {"floating_ips": [fip("10.0.0.5", "2001:db8::99")]},
        f"port {PORT_ID}: floating_ips (spec.ipNATs[0].externalIP): internalIP and externalIP are different IP versions",
    ),
    (
        "bad floating IP",
        {},
        {"floating_ips": [fip("10.0.0.5", "x")]},
        f"port {PORT_ID}: floating_ips[0].floating_ip_address: 'x' is not an IP address",
    ),
]


@pytest.mark.parametrize(
    ("port_fields", "extras", "message"),
    [c[1:] for c in PORT_REJECTS],
    ids=[c[0] for c in PORT_REJECTS],
)
def test_endpoint_rejects(
    port_fields: dict[str, Any], extras: dict[str, Any], message: str
) -> None:
    with pytest.raises(TranslationError) as info:
        endpoint_for_port(
            make_port(**port_fields), PortExtras(**{"subnets": SUBNETS, **extras}), None
        )
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("fields", "is_endpoint", "host"),
    [
        ({}, True, "compute-1"),
        ({"device_owner": "compute:az-2"}, True, "compute-1"),
        ({"device_owner": "network:router_interface"}, False, "compute-1"),
        ({"device_owner": "kuryr:container"}, False, "compute-1"),
        ({"device_owner": None}, False, "compute-1"),
        ({"binding:host_id": ""}, True, None),
        ({"binding:host_id": None}, True, None),
        ({"binding:vif_type": "unbound"}, True, None),
        ({"binding:vif_type": "binding_failed"}, True, "compute-1"),
    ],
)
def test_port_classification(fields: dict[str, Any], is_endpoint: bool, host: str | None) -> None:
    port = make_port(**fields)
    assert is_endpoint_port(port) is is_endpoint
    assert port_host(port) == host


@pytest.mark.parametrize(
    ("raw", "limit", "clean"),
    [
        ("web", 63, "web"),
        ("my group", 63, "my_group"),
        ("__x__", 63, "x"),
        ("é-name", 63, "name"),
        ("abcdef", 3, "abc"),
        ("ab-def", 3, "ab"),
        ("!!!", 63, ""),
    ],
)
def test_sanitize_label_value(raw: str, limit: int, clean: str) -> None:
    assert sanitize_label_value(raw, limit) == clean


def subnet(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "sub4",
        "network_id": "net-1",
        "ip_version": 4,
        "cidr": "10.0.0.0/24",
        "gateway_ip": "10.0.0.1",
        "enable_dhcp": True,
        "host_routes": [],
        "dns_nameservers": [],
        "ipv6_ra_mode": None,
        "ipv6_address_mode": None,
    }
    base.update(fields)
    return base


V4 = {"network_id": "net-1", "cidr": "10.0.0.0/24", "host_routes": [], "gateway_ip": "10.0.0.1"}
V6 = {
    "network_id": "net-1",
    "cidr": "2001:db8::/64",
    "host_routes": [],
    "gateway_ip": "2001:db8::1",
}
SIX = {"ip_version": 6, "cidr": "2001:db8::/64", "gateway_ip": "2001:db8::1"}

# (case, subnet fields, record)
SUBNET_CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
    ("ipv4", {}, V4),
    ("dhcp disabled", {"enable_dhcp": False}, None),
    (
        "dns servers and host routes",
        {
            "dns_nameservers": ["8.8.8.8", "1.1.1.1"],
            "host_routes": [{"destination": "10.5.0.0/16", "nexthop": "10.0.0.254"}],
        },
        {
            **V4,
            "dns_servers": ["8.8.8.8", "1.1.1.1"],
            "host_routes": [{"destination": "10.5.0.0/16", "nexthop": "10.0.0.254"}],
        },
    ),
    ("no gateway", {"gateway_ip": None}, {**V4, "gateway_ip": None}),
    (
        "ipv6 dhcpv6-stateful",
        {**SIX, "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful"},
        {**V6, "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful"},
    ),
    (
        "ipv6 slaac",
        {**SIX, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"},
        {**V6, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"},
    ),
    ("ipv6 with only one mode sends neither", {**SIX, "ipv6_address_mode": "dhcpv6-stateless"}, V6),
    ("ipv6 cidr normalised", {**SIX, "cidr": "2001:DB8:0::/64"}, V6),
]


@pytest.mark.parametrize(
    ("fields", "want"), [c[1:] for c in SUBNET_CASES], ids=[c[0] for c in SUBNET_CASES]
)
def test_dhcp_subnet_data(fields: dict[str, Any], want: dict[str, Any] | None) -> None:
    assert dhcp_subnet_data(subnet(**fields)) == want


def test_dhcp_subnet_data_rejects_bad_cidr() -> None:
    with pytest.raises(TranslationError, match="subnet sub4: cidr: 'ten/24' is not a CIDR"):
        dhcp_subnet_data(subnet(cidr="ten/24"))
