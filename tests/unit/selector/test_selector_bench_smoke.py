"""Runs bench/label_index.py at a tiny scale so the script cannot silently rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "label_index.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calico_bench_label_index", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_runs_at_tiny_scale(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    args = ["--items", "50", "--selectors", "10", "--load-repeats", "2", "--updates", "7"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "50 items x 10 selectors" in out
    for row in ("load all items + selectors", "item label update", "selector update"):
        assert row in out
