"""Runs bench/bgp_convergence.py at a tiny scale so it cannot rot (no timing assertions)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_bgp_convergence_bench_runs_at_tiny_scale(
    bench_script: Callable[[str], ModuleType],
) -> None:
    require_lab_tools()
    bench = bench_script("bgp_convergence")
    rows = bench.run([2], samples=1)
    assert [(r.hosts, r.scenario) for r in rows] == [(2, s) for s in bench.SCENARIOS]
    assert all(r.totals[0] >= r.adds[0] > 0 and r.floor[0] > 0 for r in rows)
    assert len(bench.format_rows(rows).splitlines()) == 3


def test_bgp_convergence_bench_fabric_mode_runs_at_tiny_scale(
    bench_script: Callable[[str], ModuleType],
) -> None:
    """Three hosts in two racks: the one sample (on h0, rack r0) has a same-rack host (h2) and
    another rack's (h1), so both columns get a figure."""
    require_lab_tools()
    bench = bench_script("bgp_convergence")
    rows = bench.run([3], samples=1, fabric="as-per-rack", racks=2)
    assert [(r.hosts, r.scenario, r.fabric) for r in rows] == [
        (3, s, "as-per-rack") for s in bench.SCENARIOS
    ]
    for r in rows:
        assert r.totals[0] == max(r.same_rack[0], r.other_racks[0]) >= r.adds[0] > 0
    table = bench.format_rows(rows).splitlines()
    assert len(table) == 3 and "other racks" in table[0]
    assert all(line.count("ms") == 9 for line in table[1:])  # no "-" for an empty column
