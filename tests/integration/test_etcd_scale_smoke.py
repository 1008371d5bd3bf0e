"""Runs bench/etcd_scale.py at a tiny scale (3-member cluster, 2 hosts) so it cannot rot, and
checks that each simulated host's watches sit on the member its endpoint order starts on."""

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
    rows = [line.split() for line in lines[1:4]]
    # The floor, then the hosts with the endpoints as listed, then in each host's own order.
    assert [row[:2] for row in rows] == [["1", "listed"], ["2", "listed"], ["2", "host"]]
    # Every host holds Felix's 2 watches and the BGP agent's 5, each its own stream.
    assert [row[2] for row in rows] == ["7/7", "7/7", "7/7"]
    # ... all of them on the member its order starts on: as listed, the first for every host.
    assert rows[1][3] == "2/0/0"
    for row in rows:
        placed, watchers = row[3].split("/"), row[4].split("/")
        assert watchers == [str(7 * int(n)) for n in placed], row
