"""calico/node settings from the environment, and first-found address autodetection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico.node.autodetect import InterfaceAddress, first_found, parse_ip_addr_json
from calico.node.config import NodeConfigError, settings_from_env


def test_environment_like_calico_node() -> None:
    s = settings_from_env({"NODENAME": "Host-1", "IP": "198.18.0.11/24", "IP6": "autodetect",
                           "AS": "64513", "CALICO_RUN_DIR": "/run/h1"})  # fmt: skip
    assert (s.nodename, s.ip, s.ip6, s.as_number) == (
        "host-1",
        "198.18.0.11/24",
        "autodetect",
        64513,
    )
    assert s.run_dir == Path("/run/h1") and s.networking
    unset = settings_from_env({"NODENAME": "h", "IP": "", "CALICO_NETWORKING_BACKEND": "none"})
    assert (unset.ip, unset.ip6, unset.as_number, unset.networking) == (None, None, None, False)
    assert unset.run_dir == Path("/var/run/calico")
    assert settings_from_env({"NODENAME": "h", "IP": "198.18.0.1"}).ip == "198.18.0.1/32"
    assert settings_from_env({"NODENAME": "h", "AS": "1.10"}).as_number == 65546


def test_flags_override_the_environment() -> None:
    s = settings_from_env({"NODENAME": "a", "IP": "none"}, {"NODENAME": "b", "IP": None})
    assert (s.nodename, s.ip) == ("b", "none")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IP": "300.1.1.1"}, "IP: '300.1.1.1' is not an IPv4 address"),
        ({"IP": "2001:db8::1/64"}, "IP: '2001:db8::1/64' is not an IPv4 address"),
        ({"IP6": "198.18.0.1"}, "IP6: '198.18.0.1' is not an IPv6 address"),
        ({"IP": "can-reach=8.8.8.8"}, "IP: only 'autodetect'"),
        ({"AS": "abc"}, "AS: 'abc' is not an AS number"),
        ({"AS": "0"}, "AS: '0' is not an AS number"),
        ({"NODENAME": "bad_name"}, "NODENAME: 'bad_name' is not a valid node name"),
        ({"CALICO_NETWORKING_BACKEND": "gobgp"}, "CALICO_NETWORKING_BACKEND: 'gobgp'"),
        (
            {"CALICO_IPV4POOL_CIDR": "2001:db8::/64"},
            "CALICO_IPV4POOL_CIDR: '2001:db8::/64' is not an IPv4",
        ),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(NodeConfigError) as err:
        settings_from_env({"NODENAME": "h", **env})
    assert str(err.value).startswith(message), str(err.value)


IP_ADDR = [
    {"ifname": "lo", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
                                   {"local": "::1", "prefixlen": 128, "scope": "host"}]},
    {"ifname": "cali1234567890a", "addr_info": [{"local": "169.254.1.1", "prefixlen": 32, "scope": "global"}]},
    {"ifname": "docker0", "addr_info": [{"local": "172.17.0.1", "prefixlen": 16, "scope": "global"}]},
    {"ifname": "eth0", "addr_info": [{"local": "fe80::1", "prefixlen": 64, "scope": "link"},
                                     {"local": "198.18.0.11", "prefixlen": 24, "scope": "global"},
                                     {"local": "2001:db8::11", "prefixlen": 64, "scope": "global"}]},
    {"ifname": "eth1", "addr_info": [{"local": "198.18.1.11", "prefixlen": 24, "scope": "global"}]},
]  # fmt: skip


def test_first_found_skips_excluded_interfaces_and_non_global_scopes() -> None:
    addresses = parse_ip_addr_json(json.dumps(IP_ADDR))
    assert first_found(addresses, 4) == "198.18.0.11/24"
    assert first_found(addresses, 6) == "2001:db8::11/64"
    only_excluded = [a for a in addresses if a.ifname in ("lo", "docker0", "cali1234567890a")]
    assert first_found(only_excluded, 4) is None
    link_local = [InterfaceAddress("eth0", "169.254.3.3/16", "global")]
    assert first_found(link_local, 4) is None
    assert first_found(addresses, 4, excludes=(r"^eth0$",)) == "172.17.0.1/16"
