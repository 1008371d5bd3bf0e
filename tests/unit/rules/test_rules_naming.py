"""Kernel names: Felix-compatible shortening of long IDs, IP set names and ownership."""

from __future__ import annotations

import pytest

from calico.calc.messages import PolicyID
from calico.rules import naming


@pytest.mark.parametrize(
    ("prefix", "suffix", "limit", "expected"),
    [
        # Vectors from felix/hashutils/id_test.go.
        ("felix", "1234", 10, "felix1234"),
        ("felix", "123456", 11, "felix123456"),
        ("felix", "_2345", 10, "felix_kMQI"),
        ("felix", "12345678910", 13, "felix_Y2QCZIS"),
    ],
)
def test_length_limited_matches_felix(prefix: str, suffix: str, limit: int, expected: str) -> None:
    assert naming.length_limited(prefix, suffix, limit) == expected


def test_long_chain_names_are_hashed_to_28_chars() -> None:
    long_id = PolicyID("default", "default." + "x" * 60)
    name = naming.policy_chain_name(long_id, inbound=True)
    assert len(name) == naming.MAX_CHAIN_NAME
    assert name.startswith("cali-pi-_")
    assert name != naming.policy_chain_name(
        PolicyID("default", "default." + "y" * 60), inbound=True
    )


def test_short_names_are_kept_readable() -> None:
    assert naming.profile_chain_name("kns.default", inbound=True) == "cali-pri-kns.default"
    assert naming.profile_chain_name("kns.default", inbound=False) == "cali-pro-kns.default"
    assert naming.endpoint_chain_name(naming.WORKLOAD_TO_PFX, "cali1234") == "cali-tw-cali1234"
    assert naming.policy_chain_name(PolicyID("t", "t.p"), inbound=False) == "cali-po-t/t.p"


def test_namespace_is_part_of_the_policy_identity() -> None:
    a = PolicyID("default", "knp.default.p", namespace="ns1")
    b = PolicyID("default", "knp.default.p", namespace="ns2")
    assert naming.policy_id_str(a) == "default/ns1/knp.default.p"
    assert naming.policy_chain_name(a, inbound=True) != naming.policy_chain_name(b, inbound=True)


def test_characters_iptables_cannot_take_are_hashed_away() -> None:
    name = naming.profile_chain_name("bad name!", inbound=True)
    assert name.startswith("cali-pri-_") and " " not in name and "!" not in name


def test_wildcard_host_endpoint_chain_name() -> None:
    assert naming.endpoint_chain_name(naming.HOST_FROM_PFX, "*") == "cali-fh-any-interface-at-all"


def test_ipset_names_truncate_to_31_and_have_family_and_temp_forms() -> None:
    set_id = "s:" + "A" * 40
    main4, temp6 = naming.ipset_name(4, set_id), naming.temp_ipset_name(6, set_id)
    assert main4 == ("cali40" + set_id)[:31] and len(main4) == naming.MAX_IPSET_NAME
    assert temp6.startswith("cali6ts:") and len(temp6) == naming.MAX_IPSET_NAME
    assert naming.ipset_name(6, "all-ipam-pools") == "cali60all-ipam-pools"


def test_ipset_ownership_is_per_family() -> None:
    assert naming.owns_ipset(4, "cali40s:abc") and naming.owns_ipset(4, "cali4ts:abc")
    assert not naming.owns_ipset(4, "cali60s:abc")
    assert not naming.owns_ipset(4, "kube-something")
    assert naming.is_temp_ipset(6, "cali6ts:x") and not naming.is_temp_ipset(6, "cali60s:x")
