"""Runs bench/label_index.py at a tiny scale so the script cannot silently rot."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


def test_bench_runs_at_tiny_scale(
    capsys: pytest.CaptureFixture[str], bench_script: Callable[[str], ModuleType]
) -> None:
    bench = bench_script("label_index")
    args = ["--items", "50", "--selectors", "10", "--load-repeats", "2", "--updates", "7"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "50 items x 10 selectors" in out
    for row in ("load all items + selectors", "item label update", "selector update"):
        assert row in out
