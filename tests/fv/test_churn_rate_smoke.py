"""Runs bench/churn_rate.py at a tiny rate for a few seconds (a real etcd, a real Felix, the
floor namespace) so it cannot rot. Sanity checks only: benchmarks never fail a build on a
number."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from types import ModuleType

import pytest

pytestmark = pytest.mark.fv


def test_churn_rate_bench_runs_at_a_tiny_rate(
    capsys: pytest.CaptureFixture[str], bench_script: Callable[[str], ModuleType]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: runs Felix in network namespaces")
    if shutil.which("etcd") is None:
        pytest.skip("etcd not found (make test installs it)")
    args = ["--rate", "10", "--seconds", "3", "--endpoints", "4", "--policies", "2"]
    assert bench_script("churn_rate").main([*args, "--no-write"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    achieved, floor = map(float, re.findall(r"[\d.]+", cells[1]))
    assert achieved > 0 and floor > 0
    p50, p99, top = map(float, re.findall(r"([\d.]+) ", cells[3].replace("ms", " "))[:3])
    assert 0 <= p50 <= p99 <= top  # lags were observed: routes followed the writes
    assert float(cells[7]) > 0  # from Felix's own counters
    assert "P4 target" in out
