"""Runs bench/etcd_scale.py at a tiny scale (3-member cluster, 2 hosts) so it cannot rot."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration


def test_bench_runs_at_tiny_scale(
    capsys: pytest.CaptureFixture[str], bench_script: Callable[[str], ModuleType]
) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    assert bench_script("etcd_scale").main(["--smoke"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:3]]
    assert [row[0] for row in rows] == ["1", "2"]  # the floor, then the hosts
    # Every host holds Felix's 2 watches and the BGP agent's 5, each its own stream.
    assert [row[1] for row in rows] == ["7/7", "7/7"]
