"""Runs bench/cni_exec.py at a tiny scale so it cannot rot (no timing assertions)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.fv

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cni_exec.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calico_bench_cni_exec", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cni_exec_bench_runs_at_tiny_scale() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    for tool in ("etcd", "ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")
    bench = load_bench()
    with Namespaces() as ns:
        rows = bench.run(ns, runs=2)
    assert [r.command for r in rows] == ["ADD", "DEL", "VERSION"]
    assert all(len(r.times) == len(r.floor) == 2 and min(r.times + r.floor) > 0 for r in rows)
    table = bench.format_rows(rows, runs=2)
    assert len(table.splitlines()) == 2 + 3
