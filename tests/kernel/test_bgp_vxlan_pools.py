"""BIRD with VXLAN pools, end to end (BGPAgent + BIRD 2 on hosts a and b, real etcd; the
topology is tests/kernel/bgp_harness.py's). A's blocks: one in a VXLAN pool, one in a plain
pool. BIRD installs the plain block's blackhole on A and its route on B, but no VXLAN route
into either kernel (Felix's job); A still advertises its VXLAN block; a Felix-style route via
A's `vxlan.calico` device is not exported to its iBGP peer, while a workload /32 learned the
same way is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.ipam.keys import affinity_key
from calico.ipam.records import AffinityState, BlockAffinity
from calico.testing.netns import Namespaces

from .bgp_harness import BgpHost, BgpLab, bgp_lab, wait_until

pytestmark = pytest.mark.kernel
VXLAN_BLOCK, PLAIN_BLOCK = "198.19.0.0/26", "198.20.0.0/26"
TUNNEL_ROUTE, WORKLOAD_ROUTE = "198.19.0.128/26", "198.20.0.200/32"


@pytest.fixture
def lab(netns: Namespaces, tmp_path: Path) -> Iterator[BgpLab]:
    with bgp_lab(netns, tmp_path, {"a": 1, "b": 2}) as lab:
        yield lab


def bird_knows(host: BgpHost, prefix: str) -> bool:
    ctl = str(host.run_dir / "bird.ctl")
    args = ["birdc", "-s", ctl, "show", "route", prefix]  # exact prefix; exit 1 if none
    out = host.lab.ns.exec(host.netns, args, check=False)
    return f"{prefix} " in out.stdout.replace("\t", " ")


def test_vxlan_pool_routes_stay_out_of_the_kernel_but_blocks_are_advertised(lab: BgpLab) -> None:
    a, b = lab.hosts["a"], lab.hosts["b"]
    for host in (a, b):
        bgp = {"ipv4Address": f"{host.ipv4}/24"}
        lab.apply({"kind": "Node", "metadata": {"name": host.node}, "spec": {"bgp": bgp}})
    lab.apply({"kind": "IPPool", "metadata": {"name": "vx"},
               "spec": {"cidr": "198.19.0.0/16", "vxlanMode": "Always"}})  # fmt: skip
    lab.apply({"kind": "IPPool", "metadata": {"name": "plain"}, "spec": {"cidr": "198.20.0.0/16"}})
    confirmed = BlockAffinity(AffinityState.CONFIRMED).to_json()
    for cidr in (VXLAN_BLOCK, PLAIN_BLOCK):
        lab.backend.put(affinity_key(a.node, cidr), confirmed)
    # What Felix would program on A: a route to B's VXLAN block over the VXLAN device, and a
    # workload borrowed from outside A's blocks.
    a.exec(["ip", "link", "add", "vxlan.calico", "type", "vxlan", "id", "4096", "dstport",
            "4789", "dev", "eth0"])  # fmt: skip
    a.exec(["ip", "link", "add", "calitest0", "type", "veth", "peer", "name", "calitest0p"])
    for dev in ("vxlan.calico", "calitest0", "calitest0p"):
        a.exec(["ip", "link", "set", dev, "up"])
    a.exec(["ip", "route", "add", TUNNEL_ROUTE, "via", "198.19.0.129", "dev", "vxlan.calico",
            "onlink", "proto", "80"])  # fmt: skip
    a.exec(["ip", "route", "add", WORKLOAD_ROUTE, "dev", "calitest0", "proto", "80"])
    for host in (a, b):
        host.start()
    wait_until(lambda: b.established() == {a.ipv4}, 30, "mesh up")

    wait_until(lambda: bool(b.route(PLAIN_BLOCK)), 20, "A's plain block on B")
    wait_until(lambda: bool(b.route("198.20.0.200")), 20, "A's workload /32 on B")
    wait_until(lambda: bird_knows(b, VXLAN_BLOCK), 20, "A's VXLAN block advertised to B")
    assert bird_knows(a, TUNNEL_ROUTE)  # learned from A's kernel with the /32 ...
    assert not bird_knows(b, TUNNEL_ROUTE)  # ... but never exported to an iBGP peer
    assert b.route(VXLAN_BLOCK) is None  # advertised, not programmed
    plain = a.route(PLAIN_BLOCK)
    assert plain is not None and (plain["type"], plain["protocol"]) == ("blackhole", "bird")
    assert a.route(VXLAN_BLOCK) is None  # Felix programs the VXLAN blackhole, not BIRD
