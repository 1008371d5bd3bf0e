"""DHCP agent rendering: subnet data, endpoints -> dnsmasq arguments, hosts and opts files."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from calico.model import parse_resource
from calico.model.endpoints import WorkloadEndpoint
from calico.openstack import keys, translate
from calico.openstack.dhcp.config import (
    Port,
    RenderOptions,
    Subnet,
    parse_subnet,
    port_from_endpoint,
    render,
)

NET1 = "0a1b2c3d-0000-4000-8000-000000000001"
NET2 = "1b2c3d4e-0000-4000-8000-000000000002"
BASE = "/run/calico/dhcp"
OPTS = RenderOptions(BASE)


def subnet(
    sid: str,
    cidr: str,
    gateway: str | None,
    network: str = NET1,
    **extra: Any,
) -> Subnet:
    data = {"network_id": network, "cidr": cidr, "gateway_ip": gateway, **extra}
    return parse_subnet(sid, json.dumps(data).encode())


def port(pid: str, *ips: str, mac: str = "fa:16:3e:00:00:01", **extra: Any) -> Port:
    return Port(pid, keys.interface_name(pid), mac, ips, **extra)


# --- subnet data ----------------------------------------------------------------------------


def test_parse_subnet_full() -> None:
    data = {
        "network_id": NET1,
        "cidr": "198.18.0.0/24",
        "gateway_ip": "198.18.0.1",
        "host_routes": [{"destination": "198.19.0.0/16", "nexthop": "198.18.0.254"}],
        "dns_servers": ["198.18.0.53", "2001:db8::53"],
    }
    got = parse_subnet("sub-1", json.dumps(data).encode())
    assert got == Subnet(
        "sub-1",
        NET1,
        ipaddress.ip_network("198.18.0.0/24"),
        "198.18.0.1",
        (("198.19.0.0/16", "198.18.0.254"),),
        ("198.18.0.53", "2001:db8::53"),
    )


def test_parse_subnet_defaults() -> None:
    got = parse_subnet("s", b'{"cidr": "2001:db8:1::/64", "gateway_ip": null}')
    assert (got.network_id, got.gateway_ip, got.host_routes, got.dns_servers) == (
        "calico",
        None,
        (),
        (),
    )
    assert got.ipv6_mode == "dhcpv6-stateful"


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        ({}, "dhcpv6-stateful"),
        ({"ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}, "slaac"),
        ({"ipv6_address_mode": "dhcpv6-stateless"}, "dhcpv6-stateless"),
        ({"ipv6_ra_mode": "slaac"}, "slaac"),
        ({"ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": "slaac"}, "dhcpv6-stateful"),
    ],
)
def test_ipv6_mode(modes: dict[str, str], expected: str) -> None:
    assert subnet("s", "2001:db8:1::/64", "2001:db8:1::1", **modes).ipv6_mode == expected


@pytest.mark.parametrize(
    ("sid", "value", "message"),
    [
        ("s", b"{", "not JSON"),
        ("s", b"[]", "not a JSON object"),
        ("s", b'{"cidr": "198.18.0.0/24"}', "cidr and gateway_ip are required"),
        ("s", b'{"cidr": "nope", "gateway_ip": null}', "is not a CIDR"),
        ("s", b'{"cidr": "198.18.0.0/24", "gateway_ip": "x"}', "gateway_ip: 'x'"),
        ("s", b'{"cidr": "198.18.0.0/24", "gateway_ip": "2001:db8::1"}', "not in the family"),
        ("s", b'{"cidr": "198.18.0.0/24", "gateway_ip": null, "network_id": "a,b"}', "network_id"),
        ("s", b'{"cidr": "198.18.0.0/24", "gateway_ip": null, "network_id": "../x"}', "network_id"),
        ("a/b", b'{"cidr": "198.18.0.0/24", "gateway_ip": null}', "subnet ID"),
        ("s", b'{"cidr": "198.18.0.0/24", "gateway_ip": null, "dns_servers": "x"}', "dns_servers"),
        (
            "s",
            b'{"cidr": "198.18.0.0/24", "gateway_ip": null, "dns_servers": ["x"]}',
            "dns_servers",
        ),
        ("s", b'{"cidr": "198.18.0.0/24", "gateway_ip": null, "host_routes": [1]}', "host route"),
        (
            "s",
            b'{"cidr": "198.18.0.0/24", "gateway_ip": null, "host_routes": [{"destination": "198.19.0.0/16"}]}',
            "nexthop",
        ),
        (
            "s",
            b'{"cidr": "2001:db8::/64", "gateway_ip": null, "ipv6_address_mode": "x"}',
            "ipv6_address_mode",
        ),
    ],
)
def test_parse_subnet_rejects(sid: str, value: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_subnet(sid, value)


# --- endpoints ------------------------------------------------------------------------------


def endpoint(
    spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None
) -> WorkloadEndpoint:
    base = {
        "orchestrator": "openstack",
        "workload": "vm1",
        "node": "compute-1",
        "endpoint": "0123abcd-4567",
        "interfaceName": "tap0123abcd-45",
        "mac": "FA:16:3E:00:00:01",
        "ipNetworks": ["198.18.0.5/32", "2001:db8:1::5/128"],
    }
    base.update(spec or {})
    resource = parse_resource({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": keys.endpoint_name("compute-1", "vm1", "0123abcd-4567"),
            "namespace": "openstack",
            "annotations": annotations or {},
        },
        "spec": {k: v for k, v in base.items() if v is not None},
    })  # fmt: skip
    assert isinstance(resource, WorkloadEndpoint)
    return resource


def test_port_from_endpoint() -> None:
    ann = {
        "openstack.projectcalico.org/network-id": NET1,
        "openstack.projectcalico.org/fqdn": "vm1.example.org.",
    }
    assert port_from_endpoint(endpoint(annotations=ann)) == Port(
        "0123abcd-4567",
        "tap0123abcd-45",
        "fa:16:3e:00:00:01",
        ("198.18.0.5", "2001:db8:1::5"),
        NET1,
        "vm1.example.org.",
    )


def test_annotation_keys_are_networking_calicos() -> None:
    assert translate.NETWORK_ID_ANNOTATION == "openstack.projectcalico.org/network-id"
    assert translate.FQDN_ANNOTATION == "openstack.projectcalico.org/fqdn"


def test_allowed_address_pairs_are_not_served() -> None:
    got = port_from_endpoint(
        endpoint({
            "ipNetworks": ["198.18.0.5/32", "198.18.0.50/32"],
            "allowedIps": ["198.18.0.50/32"],
            "allowSpoofedSourcePrefixes": ["198.19.0.0/16"],
        })
    )  # fmt: skip
    assert got is not None and got.ips == ("198.18.0.5",)


@pytest.mark.parametrize(
    "spec",
    [
        {"interfaceName": "cali12345"},
        {"interfaceName": None},
        {"mac": None},
        {"ipNetworks": []},
        {"ipNetworks": ["198.18.0.50/32"], "allowedIps": ["198.18.0.50/32"]},
    ],
)
def test_endpoints_without_dhcp(spec: dict[str, Any]) -> None:
    assert port_from_endpoint(endpoint(spec)) is None


# --- rendering ------------------------------------------------------------------------------

IFACE1 = "ns-0a1b2c3d-00"
DIR1 = f"{BASE}/{NET1}"


def common_args(iface: str, directory: str, taps: list[str]) -> list[str]:
    return [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--no-hosts",
        "--no-resolv",
        "--except-interface=lo",
        "--bind-dynamic",
        f"--pid-file={directory}/pid",
        f"--dhcp-hostsfile={directory}/host",
        f"--dhcp-optsfile={directory}/opts",
        f"--dhcp-leasefile={directory}/leases",
        "--dhcp-authoritative",
        "--log-facility=-",
        f"--interface={iface}",
        *(f"--interface={t}" for t in taps),
        f"--bridge-interface={','.join([iface, *taps])}",
    ]


def test_one_ipv4_network() -> None:
    subnets = {"s4": subnet("s4", "198.18.0.0/24", "198.18.0.1", dns_servers=["198.18.0.53"])}
    ports = [
        port("port-b", "198.18.0.6", mac="fa:16:3e:00:00:02"),
        port("port-a", "198.18.0.5", network_id=NET1, fqdn="vm-a.example.org"),
    ]
    out = render(ports, subnets, OPTS, {"tapport-a": 1450, "tapport-b": 9000, "tapother": 1})
    assert out.problems == ()
    assert list(out.networks) == [NET1]
    net = out.networks[NET1]
    assert net.interface == IFACE1
    assert net.addresses == (("198.18.0.1", 24),)
    assert net.taps == ("tapport-a", "tapport-b")
    assert list(net.args) == [
        *common_args(IFACE1, DIR1, ["tapport-a", "tapport-b"]),
        "--dhcp-mac=set:port-tapport-a,fa:16:3e:00:00:01",
        "--dhcp-mac=set:port-tapport-b,fa:16:3e:00:00:02",
        "--dhcp-range=set:subnet-s4,198.18.0.0,static,255.255.255.0,86400s",
        "--dhcp-lease-max=256",
    ]
    assert net.hosts == (
        "fa:16:3e:00:00:01,vm-a,198.18.0.5\nfa:16:3e:00:00:02,host-198-18-0-6,198.18.0.6\n"
    )
    # Each port gets its tap's MTU (networking-calico's per-port `mtu` option).
    assert net.opts == (
        "tag:subnet-s4,option:router,198.18.0.1\n"
        "tag:subnet-s4,option:dns-server,198.18.0.53\n"
        "tag:port-tapport-a,option:mtu,1450\n"
        "tag:port-tapport-b,option:mtu,9000\n"
    )
    assert net.files.pid == f"{DIR1}/pid"


@pytest.mark.parametrize(
    ("modes", "range_mode", "hosts_line"),
    [
        ({}, "static", "fa:16:3e:00:00:01,host-2001-db8-1--5,[2001:db8:1::5]\n"),
        (
            {"ipv6_address_mode": "dhcpv6-stateful"},
            "static",
            "fa:16:3e:00:00:01,host-2001-db8-1--5,[2001:db8:1::5]\n",
        ),
        ({"ipv6_address_mode": "dhcpv6-stateless"}, "ra-stateless", ""),
        ({"ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}, "ra-only", ""),
    ],
)
def test_dual_stack_ipv6_modes(modes: dict[str, str], range_mode: str, hosts_line: str) -> None:
    subnets = {
        "s4": subnet("s4", "198.18.0.0/24", "198.18.0.1"),
        "s6": subnet(
            "s6",
            "2001:db8:1::/64",
            "2001:db8:1::1",
            dns_servers=["2001:db8::53", "198.18.0.53"],
            **modes,
        ),
    }
    out = render([port("p", "198.18.0.5", "2001:db8:1::5")], subnets, OPTS)
    net = out.networks[NET1]
    assert net.addresses == (("198.18.0.1", 24), ("2001:db8:1::1", 64))
    assert net.args[-5:] == (
        "--dhcp-range=set:subnet-s4,198.18.0.0,static,255.255.255.0,86400s",
        f"--dhcp-range=set:subnet-s6,2001:db8:1::,{range_mode},off-link,64,86400s",
        "--enable-ra",
        f"--ra-param={IFACE1},mtu:off,0",  # the ns- device's MTU is not the VMs'
        f"--dhcp-lease-max={2**24}",
    )
    assert net.hosts == "fa:16:3e:00:00:01,host-198-18-0-5,198.18.0.5\n" + hosts_line
    assert net.opts == (
        "tag:subnet-s4,option:router,198.18.0.1\ntag:subnet-s6,option6:dns-server,[2001:db8::53]\n"
    )


def test_networks_are_separate_dnsmasqs() -> None:
    subnets = {
        "s1": subnet("s1", "198.18.1.0/24", "198.18.1.1", NET1),
        "s2": subnet("s2", "198.18.2.0/24", "198.18.2.1", NET2),
    }
    out = render([port("a", "198.18.1.5"), port("b", "198.18.2.5")], subnets, OPTS)
    assert sorted(out.networks) == [NET1, NET2]
    assert out.networks[NET1].taps == ("tapa",)
    assert out.networks[NET2].taps == ("tapb",)
    assert out.networks[NET2].interface == "ns-1b2c3d4e-00"  # the ID's first 11 characters
    assert out.networks[NET2].files.directory == f"{BASE}/{NET2}"


def test_networks_whose_interface_names_collide() -> None:
    other = NET1[:11] + "zz"  # sorts after NET1, so NET1 keeps the name
    subnets = {
        "s1": subnet("s1", "198.18.1.0/24", "198.18.1.1", NET1),
        "s2": subnet("s2", "198.18.2.0/24", "198.18.2.1", other),
    }
    out = render([port("a", "198.18.1.5"), port("b", "198.18.2.5")], subnets, OPTS)
    assert list(out.networks) == [NET1]
    assert out.problems == (f"network {other}: interface {IFACE1} is taken by network {NET1}",)


def test_network_annotation_chooses_between_equal_cidrs() -> None:
    subnets = {
        "s1": subnet("s1", "198.18.0.0/24", "198.18.0.1", NET1),
        "s2": subnet("s2", "198.18.0.0/24", "198.18.0.1", NET2),
    }
    out = render([port("a", "198.18.0.5", network_id=NET2)], subnets, OPTS)
    assert list(out.networks) == [NET2]
    assert "set:subnet-s2," in out.networks[NET2].args[-2]


@pytest.mark.parametrize(
    ("subnet_data", "ips", "problem"),
    [
        (("198.18.0.0/24", None), ("198.18.0.5",), "subnet s: has no gateway_ip"),
        (("198.18.0.0/24", "198.18.9.1"), ("198.18.0.5",), "outside 198.18.0.0/24"),
        (("2001:db8::/56", "2001:db8::1"), ("2001:db8::5",), "shorter than /64"),
        (
            ("198.18.0.0/24", "198.18.0.1"),
            ("198.19.0.5",),
            "port p: no DHCP subnet serves 198.19.0.5",
        ),
    ],
)
def test_unservable_ports(
    subnet_data: tuple[str, str | None], ips: tuple[str, ...], problem: str
) -> None:
    out = render([port("p", *ips)], {"s": subnet("s", *subnet_data)}, OPTS)
    assert out.networks == {}
    assert any(problem in p for p in out.problems), out.problems


def test_slaac_needs_a_64() -> None:
    s = subnet("s", "2001:db8::/80", "2001:db8::1", ipv6_address_mode="slaac")
    assert s.unusable() == "2001:db8::/80: slaac needs a /64"
    stateful = subnet("s", "2001:db8::/80", "2001:db8::1")
    assert stateful.unusable() is None


def test_port_with_some_addresses_unserved() -> None:
    subnets = {"s4": subnet("s4", "198.18.0.0/24", "198.18.0.1")}
    out = render([port("p", "198.18.0.5", "198.18.0.9", "2001:db8:9::5")], subnets, OPTS)
    assert out.networks[NET1].hosts == "fa:16:3e:00:00:01,host-198-18-0-5,198.18.0.5\n"
    assert out.problems == ("port p: no DHCP subnet serves 2001:db8:9::5",)


def test_address_in_another_networks_subnet_is_skipped() -> None:
    subnets = {
        "s1": subnet("s1", "198.18.1.0/24", "198.18.1.1", NET1),
        "s2": subnet("s2", "198.18.2.0/24", "198.18.2.1", NET2),
    }
    out = render([port("p", "198.18.1.5", "198.18.2.5")], subnets, OPTS)
    assert list(out.networks) == [NET1]
    assert out.networks[NET1].addresses == (("198.18.1.1", 24),)
    assert out.problems == ("port p: 198.18.2.5 is in another network's subnet",)


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            [{"destination": "198.19.0.0/16", "nexthop": "198.18.0.254"}],
            "198.19.0.0/16,198.18.0.254,0.0.0.0/0,198.18.0.1",
        ),
        (
            [{"destination": "0.0.0.0/0", "nexthop": "198.18.0.254"}],
            "0.0.0.0/0,198.18.0.254",
        ),
    ],
)
def test_host_routes(routes: list[dict[str, str]], expected: str) -> None:
    subnets = {"s": subnet("s", "198.18.0.0/24", "198.18.0.1", host_routes=routes)}
    out = render([port("p", "198.18.0.5")], subnets, OPTS)
    assert out.networks[NET1].opts == (
        "tag:subnet-s,option:router,198.18.0.1\n"
        f"tag:subnet-s,option:classless-static-route,{expected}\n"
        f"tag:subnet-s,249,{expected}\n"
    )


@pytest.mark.parametrize(
    ("fqdn", "hostname"),
    [
        ("vm1.example.org.", "vm1"),
        ("vm1", "vm1"),
        ("bad_name.example.org", "host-198-18-0-5"),
        ("", "host-198-18-0-5"),
    ],
)
def test_hostnames(fqdn: str, hostname: str) -> None:
    subnets = {"s": subnet("s", "198.18.0.0/24", "198.18.0.1")}
    out = render([port("p", "198.18.0.5", fqdn=fqdn or None)], subnets, OPTS)
    assert out.networks[NET1].hosts == f"fa:16:3e:00:00:01,{hostname},198.18.0.5\n"


def test_options() -> None:
    subnets = {"s": subnet("s", "198.18.0.0/22", "198.18.0.1")}
    out = render([port("p", "198.18.0.5")], subnets, RenderOptions("/x", 600, log_dhcp=True))
    assert out.networks[NET1].args[-3:] == (
        "--dhcp-range=set:subnet-s,198.18.0.0,static,255.255.252.0,600s",
        "--dhcp-lease-max=1024",
        "--log-dhcp",
    )


def test_neutron_dhcp_agent_options() -> None:
    subnets = {"s": subnet("s", "198.18.0.0/22", "198.18.0.1")}
    options = RenderOptions(
        "/x",
        lease_seconds=-1,
        domain="example.org",
        broadcast=True,
        lease_max=100,
        conf_file="/etc/dnsmasq-extra.conf",
        renewal_seconds=300,
        rebinding_seconds=500,
    )
    args = render([port("p", "198.18.0.5")], subnets, options).networks[NET1].args
    assert args[1] == "--conf-file=/etc/dnsmasq-extra.conf"
    assert args[-6:] == (
        "--dhcp-range=set:subnet-s,198.18.0.0,static,255.255.252.0,infinite",
        "--dhcp-lease-max=100",
        "--dhcp-option-force=option:T1,300",
        "--dhcp-option-force=option:T2,500",
        "--domain=example.org",
        "--dhcp-broadcast",
    )
    # Unset, they add nothing (and the config file is /dev/null).
    plain = render([port("p", "198.18.0.5")], subnets, OPTS).networks[NET1].args
    assert plain[1] == "--conf-file=/dev/null"
    assert not [a for a in plain if a.startswith(("--domain", "--dhcp-broadcast", "--dhcp-option"))]


def test_mtu_only_for_ipv4_leases_of_taps_that_exist() -> None:
    subnets = {
        "s4": subnet("s4", "198.18.0.0/24", "198.18.0.1"),
        "s6": subnet("s6", "2001:db8:1::/64", "2001:db8:1::1"),
    }
    ports = [port("a", "198.18.0.5"), port("b", "2001:db8:1::6"), port("c", "198.18.0.7")]
    out = render(ports, subnets, OPTS, {"tapa": 1400, "tapb": 1400})
    net = out.networks[NET1]
    assert [line for line in net.opts.splitlines() if "mtu" in line] == [
        "tag:port-tapa,option:mtu,1400"
    ]
    assert [a for a in net.args if a.startswith("--dhcp-mac=")] == [
        "--dhcp-mac=set:port-tapa,fa:16:3e:00:00:01",
        "--dhcp-mac=set:port-tapc,fa:16:3e:00:00:01",
    ]  # B has no DHCPv4 lease to tag


def test_rendering_is_deterministic() -> None:
    subnets = {
        "b": subnet("b", "198.18.1.0/24", "198.18.1.1"),
        "a": subnet("a", "198.18.0.0/24", "198.18.0.1"),
    }
    ports = [port(f"p{i}", f"198.18.{i % 2}.{10 + i}") for i in range(6)]
    first = render(ports, subnets, OPTS)
    second = render(list(reversed(ports)), dict(reversed(list(subnets.items()))), OPTS)
    assert first == second
