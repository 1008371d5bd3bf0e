"""calico/node settings from the environment, and first-found address autodetection."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.node.config import (
    NODE_VARIABLES,
    AutodetectMethod,
    DefaultPool,
    NodeConfigError,
    parse_autodetection_method,
    settings_from_env,
    variables_markdown,
)


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
    assert unset.bgp is False and s.bgp
    assert unset.run_dir == Path("/var/run/calico")
    assert settings_from_env({"NODENAME": "h", "IP": "198.18.0.1"}).ip == "198.18.0.1/32"
    assert settings_from_env({"NODENAME": "h", "AS": "1.10"}).as_number == 65546


def test_secrets_dir_for_bgp_passwords() -> None:
    assert settings_from_env({"NODENAME": "h"}).secrets_dir == Path("/etc/calico/secrets")
    s = settings_from_env({"NODENAME": "h", "CALICO_SECRETS_DIR": "/run/h/secrets"})
    assert s.secrets_dir == Path("/run/h/secrets")


def test_flags_override_the_environment() -> None:
    s = settings_from_env({"NODENAME": "a", "IP": "none"}, {"NODENAME": "b", "IP": None})
    assert (s.nodename, s.ip) == ("b", "none")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IP": "300.1.1.1"}, "IP: '300.1.1.1' is not an IPv4 address"),
        ({"IP": "2001:db8::1/64"}, "IP: '2001:db8::1/64' is not an IPv4 address"),
        ({"IP6": "198.18.0.1"}, "IP6: '198.18.0.1' is not an IPv6 address"),
        (
            {"IP": "can-reach=198.18.0.1"},
            "IP: 'can-reach=198.18.0.1' is not an address: set IP=autodetect and IP_AUTODETECTION_METHOD=can-reach=198.18.0.1",
        ),
        ({"AS": "abc"}, "AS: 'abc' is not an AS number"),
        ({"AS": "0"}, "AS: '0' is not an AS number"),
        ({"NODENAME": "bad_name"}, "NODENAME: 'bad_name' is not a valid node name"),
        ({"CALICO_NETWORKING_BACKEND": "gobgp"}, "CALICO_NETWORKING_BACKEND: 'gobgp'"),
        (
            {"CALICO_IPV4POOL_IPIP": "Always"},
            "CALICO_IPV4POOL_IPIP: 'Always' is not supported: calico-py has no IPIP",
        ),
        (
            {"CALICO_IPV4POOL_IPIP": "CrossSubnet"},
            "CALICO_IPV4POOL_IPIP: 'CrossSubnet' is not supported",
        ),
        (
            {"CALICO_IPV4POOL_VXLAN": "sometimes"},
            "CALICO_IPV4POOL_VXLAN: 'sometimes' is not 'Never', 'Always' or 'CrossSubnet'",
        ),
        (
            {"DATASTORE_TYPE": "kubernetes"},
            "DATASTORE_TYPE: 'kubernetes' is not supported: calico-py has no Kubernetes API",
        ),
        (
            {"KUBECONFIG": "/root/.kube/config"},
            "KUBECONFIG: '/root/.kube/config' is not supported: calico-py has no Kubernetes API",
        ),
        ({"K8S_API_ENDPOINT": "https://k"}, "K8S_API_ENDPOINT: 'https://k' is not supported"),
        (
            {"ETCD_DISCOVERY_SRV": "example.com"},
            "ETCD_DISCOVERY_SRV: 'example.com' is not supported: no DNS SRV discovery; list the endpoints in ETCD_ENDPOINTS",
        ),
        ({"USE_POD_CIDR": "true"}, "USE_POD_CIDR: 'true' is not supported"),
        (
            {"CALICO_DISABLE_FILE_LOGGING": "true"},
            "CALICO_DISABLE_FILE_LOGGING: 'true' is not supported: Felix and BIRD always log",
        ),
        (
            {"AUTODETECT_POLL_INTERVAL": "30"},
            "AUTODETECT_POLL_INTERVAL: '30' is not a positive duration",
        ),
        ({"WAIT_FOR_DATASTORE": "yes"}, "WAIT_FOR_DATASTORE: 'yes' is not 'true' or 'false'"),
        ({"CALICO_STARTUP_LOGLEVEL": "loud"}, "CALICO_STARTUP_LOGLEVEL: 'loud' is not a log level"),
        (
            {"CALICO_ROUTER_ID": "2001:db8::1"},
            "CALICO_ROUTER_ID: '2001:db8::1' is not an IPv4 address or 'hash'",
        ),
        (
            {"NO_DEFAULT_POOLS": "true", "CALICO_IPV4POOL_CIDR": "198.19.0.0/16"},
            "NO_DEFAULT_POOLS: 'true' contradicts CALICO_IPV4POOL_CIDR",
        ),
        (
            {"CALICO_IPV4POOL_CIDR": "198.19.0.0/16", "CALICO_IPV4POOL_BLOCK_SIZE": "19"},
            "CALICO_IPV4POOL_BLOCK_SIZE: '19' is not a block size (20-32)",
        ),
        (
            {"CALICO_IPV6POOL_CIDR": "2001:db8::/64", "CALICO_IPV6POOL_BLOCK_SIZE": "26"},
            "CALICO_IPV6POOL_BLOCK_SIZE: '26' is not a block size (116-128)",
        ),
        (
            {"CALICO_IPV4POOL_CIDR": "198.19.0.0/16", "CALICO_IPV4POOL_NODE_SELECTOR": "a ==="},
            "CALICO_IPV4POOL_NODE_SELECTOR: 'a ==='",
        ),
        (
            {"CALICO_IPV4POOL_NAT_OUTGOING": "maybe"},
            "CALICO_IPV4POOL_NAT_OUTGOING: 'maybe' is not 'true' or 'false'",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "kubernetes-internal-ip"},
            "IP_AUTODETECTION_METHOD: 'kubernetes-internal-ip' is not supported: calico-py has no Kubernetes API",
        ),
        (
            {"IP6_AUTODETECTION_METHOD": "kubernetes-internal-ip"},
            "IP6_AUTODETECTION_METHOD: 'kubernetes-internal-ip' is not supported",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "nearest"},
            "IP_AUTODETECTION_METHOD: 'nearest' is not an autodetection method",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "First-Found"},
            "IP_AUTODETECTION_METHOD: 'First-Found' is not an autodetection method",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "interface=eth(0"},
            "IP_AUTODETECTION_METHOD: 'eth(0' is not a valid regular expression",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "cidr=198.18.0.0/33"},
            "IP_AUTODETECTION_METHOD: cidr='198.18.0.0/33' is not a CIDR",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "cidr=2001:db8::/64"},
            "IP_AUTODETECTION_METHOD: cidr='2001:db8::/64' is not an IPv4 CIDR",
        ),
        (
            {"IP6_AUTODETECTION_METHOD": "can-reach=198.18.0.1"},
            "IP6_AUTODETECTION_METHOD: can-reach=198.18.0.1 is not an IPv6 address",
        ),
        (
            {"IP_AUTODETECTION_METHOD": "can-reach="},
            "IP_AUTODETECTION_METHOD: can-reach= needs a destination",
        ),
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


@pytest.mark.parametrize(
    ("text", "version", "method"),
    [
        ("", 4, AutodetectMethod()),
        ("first-found", 6, AutodetectMethod()),
        ("interface=eth1", 4, AutodetectMethod("interface", ("eth1",))),
        ("interface=eth.*, en.*", 4, AutodetectMethod("interface", ("eth.*", "en.*"))),
        ("skip-interface=eth0,ens3", 6, AutodetectMethod("skip-interface", ("eth0", "ens3"))),
        ("cidr=198.18.1.5/24 , 198.19.0.0/16", 4,
         AutodetectMethod("cidr", ("198.18.1.0/24", "198.19.0.0/16"))),
        ("cidr=2001:db8:1::/48", 6, AutodetectMethod("cidr", ("2001:db8:1::/48",))),
        ("can-reach=198.18.0.1", 4, AutodetectMethod("can-reach", ("198.18.0.1",))),
        ("can-reach=2001:db8::1", 6, AutodetectMethod("can-reach", ("2001:db8::1",))),
        ("can-reach=gateway.example", 4, AutodetectMethod("can-reach", ("gateway.example",))),
    ],
)  # fmt: skip
def test_autodetection_methods_parse_as_calico_node(
    text: str, version: int, method: AutodetectMethod
) -> None:
    assert parse_autodetection_method("IP_AUTODETECTION_METHOD", text, version) == method


def test_methods_are_read_for_both_families() -> None:
    s = settings_from_env({"NODENAME": "h", "IP_AUTODETECTION_METHOD": "interface=eth1",
                           "IP6_AUTODETECTION_METHOD": "cidr=2001:db8:1::/64"})  # fmt: skip
    assert s.ip_method == AutodetectMethod("interface", ("eth1",))
    assert s.ip6_method == AutodetectMethod("cidr", ("2001:db8:1::/64",))


def test_default_pool_settings() -> None:
    s = settings_from_env({"NODENAME": "h", "CALICO_IPV4POOL_CIDR": "198.19.0.0/16",
                           "CALICO_IPV4POOL_BLOCK_SIZE": "28",
                           "CALICO_IPV4POOL_NODE_SELECTOR": "rack == 'a'",
                           "CALICO_IPV4POOL_IPIP": "Off", "CALICO_IPV4POOL_VXLAN": "Never",
                           "CALICO_IPV6POOL_CIDR": "2001:db8:1::/64",
                           "CALICO_IPV6POOL_NAT_OUTGOING": "true",
                           "CALICO_IPV6POOL_DISABLE_BGP_EXPORT": "true"})  # fmt: skip
    assert s.ipv4_pool == DefaultPool("198.19.0.0/16", 28, True, "rack == 'a'", False)
    assert s.ipv6_pool == DefaultPool("2001:db8:1::/64", None, True, None, True)
    none = settings_from_env({"NODENAME": "h", "NO_DEFAULT_POOLS": "true"})
    assert (none.ipv4_pool, none.ipv6_pool) == (None, None)


def test_accepted_values_that_ask_for_nothing() -> None:
    s = settings_from_env({"NODENAME": "h", "DATASTORE_TYPE": "etcdv3", "USE_POD_CIDR": "false",
                           "CALICO_DISABLE_FILE_LOGGING": "false", "WAIT_FOR_DATASTORE": "true",
                           "CALICO_MANAGE_CNI": "true", "DISABLE_NODE_IP_CHECK": "true",
                           "CALICO_STARTUP_LOGLEVEL": "DEBUG", "CALICO_ROUTER_ID": "hash",
                           "CLUSTER_TYPE": "k8s, bgp", "CALICO_K8S_NODE_REF": "worker-1",
                           "KUBECONFIG": ""})  # fmt: skip
    assert (s.check_ip_conflicts, s.log_level, s.router_id) == (False, 10, "hash")
    assert (s.cluster_types, s.k8s_node_ref) == (("k8s", "bgp"), "worker-1")
    assert settings_from_env({"NODENAME": "h", "IP": "198.18.0.1"}).ip_has_prefix is False


def test_the_support_doc_lists_every_variable_of_the_table() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "support-node.md").read_text()
    names = [v.name for v in NODE_VARIABLES]
    assert len(names) == len(set(names))
    assert variables_markdown() in doc  # regenerate the table from calico.node.config


def test_poll_interval() -> None:
    assert settings_from_env({"NODENAME": "h"}).poll_interval == 60.0
    assert (
        settings_from_env({"NODENAME": "h", "AUTODETECT_POLL_INTERVAL": "2m"}).poll_interval == 120
    )
    with pytest.raises(NodeConfigError, match="AUTODETECT_POLL_INTERVAL: '0s' is not a positive"):
        settings_from_env({"NODENAME": "h", "AUTODETECT_POLL_INTERVAL": "0s"})


def test_vxlan_backend_registers_addresses_without_bgp() -> None:
    s = settings_from_env({"NODENAME": "h", "CALICO_NETWORKING_BACKEND": "VXLAN"})
    assert (s.networking, s.bgp) == (True, False)


@pytest.mark.parametrize(
    ("value", "mode"),
    [("Always", "Always"), ("crosssubnet", "CrossSubnet"), ("Cross-Subnet", "CrossSubnet"),
     ("Never", None), ("off", None), ("", None)],
)  # fmt: skip
def test_default_pool_vxlan_mode(value: str, mode: str | None) -> None:
    for version, cidr in ((4, "198.19.0.0/16"), (6, "2001:db8:1::/64")):
        env = {"NODENAME": "h", f"CALICO_IPV{version}POOL_CIDR": cidr,
               f"CALICO_IPV{version}POOL_VXLAN": value}  # fmt: skip
        s = settings_from_env(env)
        pool = s.ipv4_pool if version == 4 else s.ipv6_pool
        assert pool is not None and pool.vxlan_mode == mode
