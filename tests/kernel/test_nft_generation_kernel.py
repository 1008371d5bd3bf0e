"""The nftables generation read over netlink in a test namespace: each commit moves it by
one (iptables-nft's included, both families), reads and IP sets do not."""

from __future__ import annotations

import pytest

from calico.dataplane.kernel import nft_generation
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


def test_generation_counts_commits_not_reads(netns: Namespaces) -> None:
    host = netns.add("gen")
    read = nft_generation(host)
    assert read is not None
    start = read()
    netns.exec(host, ["iptables-nft", "-N", "cali-gen"])
    assert read() == start + 1
    netns.exec(host, ["iptables-nft-restore", "--noflush"],
               stdin="*filter\n:cali-gen - [0:0]\n-A cali-gen -j ACCEPT\nCOMMIT\n")  # fmt: skip
    netns.exec(host, ["ip6tables-nft", "-N", "cali-gen"])
    assert read() == start + 3
    netns.exec(host, ["iptables-nft-save"])
    netns.exec(host, ["ipset", "create", "cali40gen", "hash:ip"])
    assert read() == start + 3
