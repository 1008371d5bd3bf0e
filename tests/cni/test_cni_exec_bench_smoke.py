"""Runs bench/cni_exec.py at a tiny scale so it cannot rot (no timing assertions)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.fv


def test_cni_exec_bench_runs_at_tiny_scale(bench_script: Callable[[str], ModuleType]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    for tool in ("etcd", "ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")
    bench = bench_script("cni_exec")
    with Namespaces() as ns:
        rows = bench.run(ns, runs=2)
    assert [r.command for r in rows] == ["ADD", "DEL", "VERSION", "ADD node", "DEL node"]
    assert all(len(r.times) == len(r.floor) == 2 and min(r.times + r.floor) > 0 for r in rows)
    # ADD and DEL talk to etcd, whether the plugin process or the node's service runs them
    assert min(r.requests[i] for r in rows if r.command != "VERSION" for i in range(2)) > 0
    table = bench.format_rows(rows, runs=2)
    assert len(table.splitlines()) == 2 + 5
