"""Runs bench/felix_footprint.py in its --quick mode (a real etcd, a real calico-felix in the
fixture's namespaces) so it cannot rot. Sanity checks only: no size or CPU targets, since
benchmarks never fail a build on a number."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel

ROWS = (
    "RSS after in sync + idle (MiB)",
    "peak RSS, VmHWM (MiB)",
    "RSS per remote endpoint (KiB)",
    "idle CPU, Felix alone",
    "idle CPU, with its commands (% core)",
)


def test_felix_footprint_bench_quick_run_prints_sane_rows(
    netns: Namespaces, capsys: pytest.CaptureFixture[str], bench_script: Callable[[str], ModuleType]
) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd not found (make test installs it)")
    assert bench_script("felix_footprint").main(["--quick"], ns=netns) == 0
    table = capsys.readouterr().out
    assert "target" in table and "ratio" in table
    values = {}
    for metric in ROWS:
        lines = [line for line in table.splitlines() if line.startswith(metric)]
        assert len(lines) == 1, (metric, table)
        value, _target, floor, ratio = lines[0].split()[-4:]
        values[metric] = (float(value), float(floor), ratio)
    rss, floor_rss, _ = values["RSS after in sync + idle (MiB)"]
    assert 20 < floor_rss < rss < 4096  # Felix holds more than its imports
    hwm, _, _ = values["peak RSS, VmHWM (MiB)"]
    assert hwm >= rss
    per_endpoint, value_bytes, _ = values["RSS per remote endpoint (KiB)"]
    assert value_bytes > 0.1 and abs(per_endpoint) < 1000  # a slope, noisy at this scale
    own, cpu_floor, _ = values["idle CPU, Felix alone"]
    everything, _, _ = values["idle CPU, with its commands (% core)"]
    assert 0 <= own <= everything < 200 and cpu_floor > 0
    assert re.search(r"idle window: \d+ s", table)
