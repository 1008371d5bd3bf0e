"""IP autodetection's selection rules (pure): calico/node's interface order, exclusions,
regexes, CIDRs and can-reach matching. The kernel tier runs them in namespaces."""

from __future__ import annotations

import pytest

from calico.node.autodetect import AutodetectError, InterfaceAddress, detect, local_prefix
from calico.node.config import AutodetectMethod

# As the kernel lists them: by interface index, addresses in the kernel's order.
HOST = [
    InterfaceAddress("lo", 1, "127.0.0.1/8"),
    InterfaceAddress("lo", 1, "::1/128"),
    InterfaceAddress("eth0", 2, "198.18.0.11/24"),
    InterfaceAddress("eth0", 2, "2001:db8:0:1::11/64"),
    InterfaceAddress("eth0", 2, "fe80::1/64"),
    InterfaceAddress("eth1", 3, "169.254.7.7/16"),
    InterfaceAddress("eth1", 3, "198.18.1.11/25"),
    InterfaceAddress("eth1", 3, "198.18.1.12/25"),
    InterfaceAddress("eth1", 3, "2001:db8:0:2::11/64"),
    InterfaceAddress("docker0", 4, "198.18.9.1/24"),
    InterfaceAddress("cali1234567890a", 5, "198.18.8.1/32"),
    InterfaceAddress("loop2", 6, "198.18.7.1/32"),  # "^lo" is not anchored at the end
]


def pick(text: str, version: int = 4, host: list[InterfaceAddress] = HOST) -> str:
    kind, _, rest = text.partition("=")
    method = AutodetectMethod(kind, tuple(rest.split(",")) if rest else ())
    return detect(method, version, lambda: host, reach=lambda dest, v: "198.18.1.12")


@pytest.mark.parametrize(
    ("method", "version", "expected"),
    [
        # highest interface index first; docker0, cali*, lo* skipped; link-local skipped
        ("first-found", 4, "198.18.1.11/25"),
        ("first-found", 6, "2001:db8:0:2::11/64"),
        ("interface=eth0", 4, "198.18.0.11/24"),
        ("interface=eth0", 6, "2001:db8:0:1::11/64"),
        ("interface=th0", 4, "198.18.0.11/24"),  # unanchored, as Go's MatchString
        ("interface=eth.*", 4, "198.18.1.11/25"),
        ("interface=docker0", 4, "198.18.9.1/24"),  # interface= applies no default skips
        ("interface=nothere,eth0", 4, "198.18.0.11/24"),
        ("skip-interface=eth1", 4, "198.18.0.11/24"),
        ("skip-interface=eth1", 6, "2001:db8:0:1::11/64"),
        ("skip-interface=eth.*", 4, None),  # the defaults still apply
        ("cidr=198.18.0.0/24", 4, "198.18.0.11/24"),
        ("cidr=198.19.0.0/16,198.18.1.0/28", 4, "198.18.1.11/25"),
        ("cidr=198.18.0.0/16", 4, "198.18.7.1/32"),  # loop2 (index 6) comes first
        ("cidr=198.18.9.0/24", 4, "198.18.9.1/24"),  # cidr= applies no default skips
        ("cidr=2001:db8:0:1::/64", 6, "2001:db8:0:1::11/64"),
        ("cidr=198.19.0.0/16", 4, None),
        ("can-reach=198.18.1.1", 4, "198.18.1.12/25"),  # with the interface's prefix
    ],
)
def test_methods_pick_as_calico_node(method: str, version: int, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(AutodetectError, match=f"no global IPv{version} address"):
            pick(method, version)
    else:
        assert pick(method, version) == expected


def test_only_excluded_or_non_global_addresses_find_nothing() -> None:
    host = [a for a in HOST if a.ifname in ("lo", "docker0") or a.cidr.startswith("169.254")]
    with pytest.raises(AutodetectError):
        pick("first-found", 4, host)


def test_can_reach_source_must_be_a_local_address() -> None:
    method = AutodetectMethod("can-reach", ("198.18.5.5",))
    with pytest.raises(
        AutodetectError, match=r"198\.18\.50\.1 used to reach 198\.18\.5\.5 is on no"
    ):
        detect(method, 4, lambda: HOST, reach=lambda dest, v: "198.18.50.1")


def test_local_prefix_of_an_explicit_address() -> None:
    assert local_prefix("198.18.1.12", HOST) == "198.18.1.12/25"
    assert local_prefix("198.18.44.1", HOST) is None
