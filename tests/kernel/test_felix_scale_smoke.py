"""Runs bench/felix_scale.py in its --smoke mode (inside the fixture's namespaces) so it
cannot rot. No timing assertions: benchmarks never fail a build on a time."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

ROWS = (
    "cold: resources -> kernel in sync",
    "policy rule change",
    "rule selector change",
    "endpoint add",
    "calc: resources -> messages",
    "render: messages -> restore texts",
    "calc+render total (no kernel)",
)


def test_felix_scale_bench_smoke_run_prints_the_table(
    netns: Namespaces, capsys: pytest.CaptureFixture[str], bench_script: Callable[[str], ModuleType]
) -> None:
    assert bench_script("felix_scale").main(["--smoke"], ns=netns) == 0
    table = capsys.readouterr().out
    assert "median ms" in table and "ratio" in table
    for scenario in ROWS:
        assert table.count(scenario) == 1, scenario
