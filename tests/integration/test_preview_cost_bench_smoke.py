"""Runs bench/preview_cost.py at a tiny scale so it cannot rot (no timing assertions)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration


def test_preview_cost_bench_runs_at_tiny_scale(bench_script: Callable[[str], ModuleType]) -> None:
    bench = bench_script("preview_cost")
    small, twice = bench.measure(4, 2, 1), bench.measure(24, 2, 1)
    # 4 endpoints on 2 hosts are 4 classes of one; 24 over 2 hosts and 10 apps are 10 classes
    # of two or three. With the one external address (no host has an address here), on two
    # probes: traces grow with the classes, not with the endpoints.
    assert small["traces"] == (4 * 3 + 4 * 2) * 2
    assert twice["traces"] == (10 * 10 + 10 * 2) * 2
    assert small["changes"] > 0 and twice["changes"] > 0
    assert len(bench.table([small, twice]).splitlines()) == 3
