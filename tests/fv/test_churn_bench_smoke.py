"""Runs bench/churn.py for a few seconds (a real etcd, a real Felix) so it cannot rot; the
figures themselves are the bench's to report, but a short churn must leave nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

pytestmark = pytest.mark.fv


def test_churn_bench_runs_briefly(bench_script: Callable[[str], ModuleType]) -> None:
    bench = bench_script("churn")
    rows, notes = bench.run(minutes=0.2, rate=10, settle_cap=60, endpoints=4)
    assert "Churned per round: 4 endpoints" in notes
    must = [r for r in rows if r.test.startswith(("Leftovers", "Felix alive"))]
    assert len(must) == 3 and all(r.met for r in must), rows
    assert bench.render(rows, notes, 0.2).startswith("## Endpoint and policy churn")
