"""calico/node's environment: NodeSettings or a NodeConfigError naming the variable."""

from __future__ import annotations

from _fuzz import clean, fuzz
from hypothesis import given
from hypothesis import strategies as st

from calico.node.config import NODE_VARIABLES, NodeConfigError, settings_from_env

NAMES = sorted(v.name for v in NODE_VARIABLES)
VALID = {
    "NODENAME": "host-1",
    "IP": "198.18.0.11/24",
    "IP6": "2001:db8::11/64",
    "AS": "64512",
    "CALICO_IPV4POOL_CIDR": "198.19.0.0/16",
    "CALICO_IPV4POOL_BLOCK_SIZE": "26",
    "CALICO_IPV4POOL_VXLAN": "CrossSubnet",
    "IP_AUTODETECTION_METHOD": "can-reach=198.18.0.1",
    "AUTODETECT_POLL_INTERVAL": "30s",
    "CALICO_ROUTER_ID": "hash",
}
VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "true",
            "false",
            "none",
            "autodetect",
            "0",
            "-1",
            "4294967296",
            "1.2",
            "65536.65536",
            "10s",
            "interface=(",
            "cidr=300.0.0.0/8",
            "can-reach=::1",
            "skip-interface=eth.*,",
            "198.18.0.1/33",
            "2001:db8::/129",
            "Always",
            "x" * 10_000,
            "a,b,,c",
            "\x00",
        ]
    ),
)


@fuzz
@given(
    st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=5),
    st.sets(st.sampled_from(sorted(VALID))),
)
def test_environment(changes: dict[str, str], dropped: set[str]) -> None:
    env = {k: v for k, v in {**VALID, **changes}.items() if k not in dropped or k in changes}
    env.setdefault("NODENAME", "host-1")  # else the machine's own name stands in
    clean(lambda: settings_from_env(env), NodeConfigError)
