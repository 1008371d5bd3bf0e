"""Runs bench/vxlan_throughput.py at a tiny scale so it cannot rot (no throughput assertions):
its floor alone, and the whole bench (which needs the VXLAN dataplane)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_vxlan_throughput_floor_runs(bench_script: Callable[[str], ModuleType]) -> None:
    require_lab_tools()
    floor = bench_script("vxlan_throughput").floor_samples(1, 1.0)
    assert len(floor["routed"]) == len(floor["vxlan"]) == 1
    assert floor["routed"][0] > 0 and floor["vxlan"][0] > 0


def test_vxlan_throughput_bench_runs_at_tiny_scale(
    bench_script: Callable[[str], ModuleType],
) -> None:
    require_lab_tools()
    bench = bench_script("vxlan_throughput")
    result = bench.run(1, 1.0)
    assert all(len(v) == 1 and v[0] > 0 for v in (result.routed, result.vxlan,
                                                  result.floor_routed, result.floor_vxlan))  # fmt: skip
    table = bench.format_result(result).splitlines()
    assert len(table) == 4 and table[-1].startswith("VXLAN / routed")
