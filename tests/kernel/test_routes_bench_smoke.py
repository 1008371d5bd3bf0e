"""Runs bench/routes.py at a tiny scale (inside the fixture's namespaces) so it cannot rot.
No timing assertions: benchmarks never fail a build on a time."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


def test_routes_bench_runs_at_tiny_scale(
    netns: Namespaces, bench_script: Callable[[str], ModuleType]
) -> None:
    bench = bench_script("routes")
    rows = bench.run(netns, [3, 30], ifaces=3, reps=2)
    table = bench.format_rows(rows, reps=2)
    for scenario in ("program N routes", "restart, nothing to do", "add 1 route at steady state"):
        assert table.count(scenario) == 2
    assert len(table.splitlines()) == 2 + 6
