"""Runs bench/felix_restart.py in its --smoke mode (a real etcd, a real calico-felix killed
and restarted in the fixture's namespaces, a ping across it) so it cannot rot. Sanity checks
only, no time targets; but a restart that rewrites an unchanged dataplane or drops a packet
of the established ping is a bug, not a figure."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


def test_felix_restart_bench_smoke_run_restarts_without_writes_or_loss(
    netns: Namespaces, capsys: pytest.CaptureFixture[str], bench_script: Callable[[str], ModuleType]
) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd not found (make test installs it)")
    assert bench_script("felix_restart").main(["--smoke"], ns=netns) == 0
    table = capsys.readouterr().out
    rows = {line[:34].strip(): line[34:].split() for line in table.splitlines()[2:8]}
    median, _p99, floor, ratio, _target = rows["restart -> in sync (s)"][1:]
    assert float(floor) > 0 and float(median) > 0 and float(ratio) > 0
    cpu, _p99, cpu_floor, _ratio, _target = rows["CPU until in sync (s)"][1:]
    assert float(cpu) > 0 and float(cpu_floor) > 0
    for zero in ("commands that write", "route/neighbour changes (netlink)", "nftables commits"):
        assert rows[zero][1:3] == ["0", "0"], (zero, table)
    assert rows["packets lost (10 ms ping)"][1] == "0", table
    assert "pings sent over the restarts" in table
