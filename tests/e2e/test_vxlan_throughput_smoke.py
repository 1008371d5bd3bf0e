"""Runs bench/vxlan_throughput.py at a tiny scale so it cannot rot (no throughput assertions):
its floor alone, and the whole bench (which needs the VXLAN dataplane)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .conftest import require_lab_tools

BENCH = Path(__file__).resolve().parents[2] / "bench" / "vxlan_throughput.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calico_bench_vxlan_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_vxlan_throughput_floor_runs() -> None:
    require_lab_tools()
    floor = load_bench().floor_samples(1, 1.0)
    assert len(floor["routed"]) == len(floor["vxlan"]) == 1
    assert floor["routed"][0] > 0 and floor["vxlan"][0] > 0


def test_vxlan_throughput_bench_runs_at_tiny_scale() -> None:
    require_lab_tools()
    bench = load_bench()
    result = bench.run(1, 1.0)
    assert all(len(v) == 1 and v[0] > 0 for v in (result.routed, result.vxlan,
                                                  result.floor_routed, result.floor_vxlan))  # fmt: skip
    table = bench.format_result(result).splitlines()
    assert len(table) == 4 and table[-1].startswith("VXLAN / routed")
