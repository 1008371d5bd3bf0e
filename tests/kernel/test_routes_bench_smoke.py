"""Runs bench/routes.py at a tiny scale (inside the fixture's namespaces) so it cannot rot.
No timing assertions: benchmarks never fail a build on a time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

BENCH = Path(__file__).resolve().parents[2] / "bench" / "routes.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calico_bench_routes", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_routes_bench_runs_at_tiny_scale(netns: Namespaces) -> None:
    bench = load_bench()
    rows = bench.run(netns, [3, 30], ifaces=3, reps=2)
    table = bench.format_rows(rows, reps=2)
    for scenario in ("program N routes", "restart, nothing to do", "add 1 route at steady state"):
        assert table.count(scenario) == 2
    assert len(table.splitlines()) == 2 + 6
