"""Node-to-node mesh off, two route reflectors (calico nodes with a cluster ID, peered with
every node by a BGPPeer selector): routes go through them, and one of them is enough."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from calico.lab.lab import Lab
from calico.lab.spec import Workload
from calico.model.network import BGPConfiguration

from .conftest import eventually, lab_fixture, wait_until

LAB = """
name: e2err
fabric: {ipv4: 198.18.0.0/24}
pools: [{cidr: 198.19.0.0/20}]
hosts:
  - {name: rr-1, ipv4: 198.18.0.2, routeReflector: 224.0.0.1}
  - {name: rr-2, ipv4: 198.18.0.3, routeReflector: 224.0.0.1}
  - {name: c-1, ipv4: 198.18.0.11}
  - {name: c-2, ipv4: 198.18.0.12}
workloads:
  - {name: w1, host: c-1, ports: [80]}
  - {name: w2, host: c-2, ports: [80]}
"""
REFLECTORS = {"198_18_0_2", "198_18_0_3"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from lab_fixture(LAB, tmp_path_factory.mktemp("rr"))


def test_clients_peer_only_with_the_reflectors_and_reach_each_other(lab: Lab) -> None:
    assert lab.client.get(BGPConfiguration, "default").spec.nodeToNodeMeshEnabled is False
    for client in ("c-1", "c-2"):
        sessions = lab.sessions(client)
        assert {s.name.split("_", 1)[1] for s in sessions} == REFLECTORS, sessions
        wait_until(lambda c=client: all(s.established for s in lab.sessions(c)), 30,
                   f"{client}'s sessions established")  # fmt: skip
    # Once, under CI load, c-1 had no route to w2 here although `lab up` had waited for
    # every route: wait for it again rather than read a route mid-relearning.
    lab.wait_routes(["w2"], hosts=["c-1"])
    route = lab.exec("c-1", ["ip", "route", "get", lab.state.workloads["w2"].ipv4 or ""]).stdout
    assert "via 198.18.0.12 " in route  # the reflector keeps the originating next hop
    eventually(lab, "w1", "w2", True)
    eventually(lab, "w2", "w1", True, proto="icmp")


def test_one_reflector_is_enough(lab: Lab) -> None:
    lab.kill_node("rr-1")
    survivors = ["rr-2", "c-1", "c-2"]
    wait_until(lambda: not any(s.established for s in lab.sessions("c-1") if "198_18_0_2" in s.name),
               30, "c-1 notices rr-1 is gone")  # fmt: skip
    eventually(lab, "w1", "w2", True)
    lab.add_workload(Workload(name="w3", host="c-2", ports=[80]))
    lab.wait_routes(["w3"], hosts=survivors)
    eventually(lab, "w1", "w3", True)
    eventually(lab, "w3", "w1", True)
