"""Runs bench/felix_scale.py in its --smoke mode (inside the fixture's namespaces) so it
cannot rot. No timing assertions: benchmarks never fail a build on a time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

BENCH = Path(__file__).resolve().parents[2] / "bench" / "felix_scale.py"
ROWS = (
    "cold: resources -> kernel in sync",
    "policy rule change",
    "rule selector change",
    "endpoint add",
    "calc: resources -> messages",
    "render: messages -> restore texts",
    "calc+render total (no kernel)",
)


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calico_bench_felix_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_felix_scale_bench_smoke_run_prints_the_table(
    netns: Namespaces, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_bench().main(["--smoke"], ns=netns) == 0
    table = capsys.readouterr().out
    assert "median ms" in table and "ratio" in table
    for scenario in ROWS:
        assert table.count(scenario) == 1, scenario
