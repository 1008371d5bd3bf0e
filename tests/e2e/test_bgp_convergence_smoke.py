"""Runs bench/bgp_convergence.py at a tiny scale so it cannot rot (no timing assertions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from calico.lab.labfile import load_lab

from .conftest import require_lab_tools


def test_bgp_convergence_bench_runs_at_tiny_scale(
    bench_script: Callable[[str], ModuleType],
) -> None:
    require_lab_tools()
    bench = bench_script("bgp_convergence")
    rows = bench.run([2], samples=1)
    assert [(r.hosts, r.scenario) for r in rows] == [(2, s) for s in bench.SCENARIOS]
    for r in rows:
        assert r.calico.totals[0] >= r.calico.adds[0] > 0
        assert r.floor.totals[0] >= r.floor.adds[0] > 0
        assert not (r.calico.same_rack or r.floor.same_rack)  # the mesh has no racks
    assert len(bench.format_rows(rows).splitlines()) == 3


def test_bgp_convergence_bench_fabric_mode_runs_at_tiny_scale(
    bench_script: Callable[[str], ModuleType],
) -> None:
    """Three hosts in two racks: the one sample (on h0, rack r0) has a same-rack host (h2) and
    another rack's (h1), so both columns get a figure, from Calico and from the fabric floor
    (plain BIRD hosts peering with their ToR, as-per-host: eBGP with an AS each)."""
    require_lab_tools()
    bench = bench_script("bgp_convergence")
    rows = bench.run([3], samples=1, fabric="as-per-host", racks=2)
    assert [(r.hosts, r.scenario, r.fabric) for r in rows] == [
        (3, s, "as-per-host") for s in bench.SCENARIOS
    ]
    for r in rows:
        for s in (r.calico, r.floor):
            assert s.totals[0] == max(s.same_rack[0], s.other_racks[0]) >= s.adds[0] > 0
    table = bench.format_rows(rows).splitlines()
    assert len(table) == 4 and "other racks" in table[0]
    assert all(line.count("ms") == 11 for line in table[2:])  # no "-" for an empty column


def test_bgp_convergence_fabric_floor_hosts_peer_with_their_tor(
    bench_script: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    """The floor's BIRD peers as calico node would: its ToR only, with the ToR's AS."""
    bench = bench_script("bgp_convergence")
    spec = load_lab(bench.fabric_lab_file(3, 2, "as-per-rack"), "bench lab")
    floor = bench.Floor(spec, tmp_path / "floor")
    assert [floor.peers(h) for h in spec.hosts] == [
        [("198.18.1.1", 65001)],
        [("198.18.2.1", 65002)],
        [("198.18.1.1", 65001)],
    ]
