"""CNI: the network config on stdin, the CNI_* environment and the ETCD_* settings either
parse or raise CniError with a code and a message naming the key."""

from __future__ import annotations

import json
from typing import Any

from _fuzz import clean, deep_text, fuzz, json_values, mutated
from hypothesis import given
from hypothesis import strategies as st

from calico.cni.config import etcd_config, parse_netconf
from calico.cni.spec import CniError, parse_environment

NETCONF: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "k8s-pod-network",
    "type": "calico",
    "log_level": "info",
    "etcd_endpoints": "http://198.18.0.1:2379",
    "mtu": 1440,
    "nodename": "host-1",
    "ipam": {
        "type": "calico-ipam",
        "assign_ipv4": "true",
        "assign_ipv6": "true",
        "ipv4_pools": ["198.19.0.0/16"],
    },
    "policy": {"type": "k8s"},
    "container_settings": {"allow_ip_forwarding": False},
    "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}},
}
ENVIRON = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;IP=198.19.0.5",
}
_ENV_VALUES = st.one_of(
    st.text(max_size=30), st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "=", ";", "a=b;c"])
)


def _netconf(data: bytes) -> None:
    def parse() -> None:
        conf = parse_netconf(data)
        etcd_config(conf, {})

    exc = clean(parse, CniError)
    if exc is not None:
        assert exc.msg and exc.code, exc


@fuzz
@given(mutated(NETCONF))
def test_near_valid_netconf(doc: Any) -> None:
    _netconf(json.dumps(doc).encode())


@fuzz
@given(
    st.one_of(
        st.binary(),
        deep_text(["[", '{"a": ']).map(str.encode),
        json_values().map(lambda v: json.dumps(v).encode()),
    )
)
def test_arbitrary_netconf(data: bytes) -> None:
    _netconf(data)


@fuzz
@given(
    st.dictionaries(st.sampled_from(sorted(ENVIRON)), _ENV_VALUES).map(
        lambda changes: {**ENVIRON, **changes}
    ),
    st.sets(st.sampled_from(sorted(ENVIRON))),
)
def test_environment(environ: dict[str, str], dropped: set[str]) -> None:
    env = {k: v for k, v in environ.items() if k not in dropped}
    clean(lambda: parse_environment(env), CniError)


@fuzz
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "ETCD_ENDPOINTS",
                "ETCD_KEY_FILE",
                "ETCD_CERT_FILE",
                "ETCD_CA_CERT_FILE",
                "ETCD_AUTHORITY",
                "ETCD_SCHEME",
                "ETCD_USERNAME",
                "ETCD_PASSWORD",
                "ETCD_DIAL_TIMEOUT",
            ]
        ),
        st.text(max_size=40),
    )
)
def test_etcd_environment(environ: dict[str, str]) -> None:
    conf = parse_netconf(json.dumps({**NETCONF, "etcd_endpoints": None}).encode())
    clean(lambda: etcd_config(conf, environ), CniError)
