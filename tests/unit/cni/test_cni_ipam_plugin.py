"""calico-ipam: the IPAM result format, release by handle, CHECK."""

from __future__ import annotations

from cni_harness import CONTAINER_ID, Harness, netconf


def test_add_returns_ipam_result_with_block_prefixes(harness: Harness) -> None:
    conf = netconf(ipam={"type": "calico-ipam", "assign_ipv6": "true"})
    out = harness.ipam("ADD", conf)
    assert out.code == 0, out.doc
    assert out.doc == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "198.19.0.0/29"}, {"address": "2001:db8:100::/125"}],
        "dns": {},
    }
    assert harness.services.ipam.ips_by_handle(f"net1.{CONTAINER_ID}") == [
        "198.19.0.0",
        "2001:db8:100::",
    ]
    assert harness.services.net.wired == {}  # an IPAM plugin never touches interfaces


def test_add_0_3_1_and_pool_selection(harness: Harness) -> None:
    conf = netconf("0.3.1", ipam={"type": "calico-ipam", "ipv4_pools": ["pool-a"]})
    out = harness.ipam("ADD", conf)
    assert out.doc is not None and out.doc["ips"] == [{"version": "4", "address": "198.19.0.0/29"}]
    assert harness.services.ipam.requests[0].ipv4_pools == ("pool-a",)


def test_del_releases_and_is_idempotent(harness: Harness) -> None:
    assert harness.ipam("ADD", netconf()).code == 0
    assert harness.ipam("CHECK", netconf()).code == 0
    for _ in range(2):
        assert harness.ipam("DEL", netconf()).code == 0
        assert harness.services.ipam.allocations == {}
    out = harness.ipam("CHECK", netconf())
    assert out.doc is not None and out.doc["code"] == 104


def test_exhausted(harness: Harness) -> None:
    harness.services.ipam.v4 = []
    out = harness.ipam("ADD", netconf())
    assert out.doc is not None and (out.code, out.doc["code"]) == (1, 101)
