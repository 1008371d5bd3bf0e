"""The L3 fabric (examples/lab/l3-fabric.yaml): racks behind FRR ToRs, two spines, no mesh.
Workloads reach each other across racks, hosts learn remote racks from their ToR, a spine can
die without losing connectivity and a restarted ToR heals. The as-per-host model on a small
variant (one spine)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.lab import frr
from calico.lab.fabric import FABRIC_TIMERS
from calico.lab.lab import Lab, running_lab
from calico.lab.labfile import load_lab, read_lab

from .conftest import require_lab_tools, wait_until

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab" / "l3-fabric.yaml"
HEAL_TIMEOUT = 60.0
# A restarted ToR: its hosts' BIRD retries every 5 s, FRR every 2 s; a session lost without a
# NOTIFICATION would take the hold time. Allow both, twice over, on a busy machine.
TOR_HEAL_TIMEOUT = 2 * (FABRIC_TIMERS[1] + 5)
AS_PER_HOST = """
name: e2el3h
model: as-per-host
fabric: {ipv4: 198.18.0.0/24}
pools: [{cidr: 198.19.0.0/20}]
spines: [{name: spine, asNumber: 65100}]
racks:
  - {name: r1, subnet: 198.18.1.0/24, tor: {name: tor-1, asNumber: 65001}}
  - {name: r2, subnet: 198.18.2.0/24, tor: {name: tor-2, asNumber: 65002}}
hosts:
  - {name: h1, rack: r1, ipv4: 198.18.1.11, asNumber: 65011}
  - {name: h1b, rack: r1, ipv4: 198.18.1.12, asNumber: 65012}
  - {name: h2, rack: r2, ipv4: 198.18.2.11, asNumber: 65021}
workloads:
  - {name: w1, host: h1, ports: [80]}
  - {name: w1b, host: h1b, ports: [80]}
  - {name: w2, host: h2, ports: [80]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_lab_tools()
    tmp = tmp_path_factory.mktemp("l3")
    spec = read_lab(EXAMPLE).model_copy(update={"name": "e2el3"})
    with running_lab(spec, tmp / "state", lambda msg: print(f"lab l3: {msg}")) as lab:
        yield lab


def broken_pairs(lab: Lab) -> list[tuple[str, str]]:
    return [pair for pair, ok in lab.matrix().cells.items() if ok is False]


def seconds_until_all_reach(lab: Lab, timeout: float = HEAL_TIMEOUT) -> float:
    """Probe every workload pair until all succeed; how long that took."""
    start = time.monotonic()
    wait_until(lambda: not broken_pairs(lab), timeout, "every workload reaches every other")
    return time.monotonic() - start


def route(lab: Lab, host: str, workload: str) -> dict[str, str]:
    address = lab.state.workloads[workload].ipv4 or ""
    out = lab.exec(host, ["ip", "-j", "route", "show", "match", address]).stdout
    routes = [r for r in json.loads(out) if r["dst"] != "default"]
    assert len(routes) == 1, routes
    return dict(routes[0])


def tor_routes(lab: Lab, name: str) -> dict[str, list[str]]:
    return frr.routes(lab.router_dir(name), lab.netns(name))


def test_every_workload_reaches_every_other_across_racks(lab: Lab) -> None:
    assert broken_pairs(lab) == []
    assert all(lab.probe(a, b, "icmp").ok for a, b in (("w-1a", "w-2b"), ("w-2a", "w-1b")))


def test_hosts_peer_only_with_their_tor_and_learn_remote_racks_from_it(lab: Lab) -> None:
    for host, tor in (("host-1a", "198_18_1_1"), ("host-2b", "198_18_2_1")):
        sessions = lab.sessions(host)
        assert [s.name for s in sessions] == [f"Node_{tor}"] and sessions[0].established
    remote = route(lab, "host-1a", "w-2a")
    assert (remote["gateway"], remote["protocol"]) == ("198.18.1.1", "bird")
    same_rack = route(lab, "host-1a", "w-1b")  # reflected by the ToR, next hop kept
    assert (same_rack["gateway"], same_rack["protocol"]) == ("198.18.1.12", "bird")
    hosts = {h["name"]: h for h in lab.status()["hosts"]}
    assert hosts["host-2a"]["tor"] == {"name": "tor-2", "info": "Established"}
    vtysh = lab.exec("tor-1", ["vtysh", "-c", "show bgp ipv4 unicast summary json"])
    assert json.loads(vtysh.stdout)["peers"]["198.18.1.11"]["state"] == "Established", vtysh


def test_a_restarted_tor_heals(lab: Lab) -> None:
    lab.stop_router("tor-2")
    wait_until(lambda: ("w-1a", "w-2a") in broken_pairs(lab), 10, "rack-2 is cut off")
    lab.start_router("tor-2")
    took = seconds_until_all_reach(lab, TOR_HEAL_TIMEOUT)
    print(f"ToR restart: every workload reaches every other {took:.1f}s after FRR started")
    hosts = {h["name"]: h for h in lab.status()["hosts"]}
    assert hosts["host-2b"]["tor"]["info"].startswith("Established")


def test_losing_a_spine_loses_no_connectivity(lab: Lab) -> None:
    tor1 = lab.router_sessions("tor-1")
    assert tor1["198.18.0.1"] == tor1["198.18.0.3"] == "Established"  # both spines
    rack2 = "198.18.2.0/24"
    assert sorted(tor_routes(lab, "tor-1")[rack2]) == ["198.18.0.1", "198.18.0.3"]
    lab.fail_spine("spine-1")
    took = seconds_until_all_reach(lab, 15.0)
    print(f"spine failure: every workload reaches every other after {took:.2f}s")
    wait_until(lambda: lab.router_sessions("tor-1")["198.18.0.1"] != "Established", 15,
               "tor-1 notices spine-1 is gone")  # fmt: skip
    assert broken_pairs(lab) == []
    assert tor_routes(lab, "tor-1")[rack2] == ["198.18.0.3"]
    lab.restore_spine("spine-1")
    wait_until(lambda: len(tor_routes(lab, "tor-1")[rack2]) == 2, 30, "both spines again")
    assert broken_pairs(lab) == []


def test_as_per_host(tmp_path: Path) -> None:
    require_lab_tools()
    spec = load_lab(AS_PER_HOST, "e2e lab", tmp_path)
    with running_lab(spec, tmp_path / "state", lambda msg: print(f"lab l3h: {msg}")) as lab:
        assert lab.node_env("h2")["AS"] == "65021"
        assert [s.name for s in lab.sessions("h1")] == ["Node_198_18_1_1"]
        remote = route(lab, "h1", "w2")
        assert (remote["gateway"], remote["protocol"]) == ("198.18.1.1", "bird")
        same_rack = route(lab, "h1", "w1b")  # the ToR passes its rack-mate's next hop on
        assert (same_rack["gateway"], same_rack["protocol"]) == ("198.18.1.12", "bird")
        assert broken_pairs(lab) == []
