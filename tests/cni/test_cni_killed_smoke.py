"""Runs bench/cni_killed.py and bench/faults_b.py at a tiny scale and asserts their count
goals: SIGKILLed CNI ADDs leave nothing once DELeted; every datastore reader survives
garbage, names each bad key in one line, and fails closed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from calico.testing.doc_sections import write_section
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.fv


def test_killed_adds_leak_nothing_and_the_section_is_written(
    bench_script: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    for tool in ("etcd", "ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")
    killed = bench_script("cni_killed")
    with Namespaces() as ns:
        leaks = killed.run(ns, adds=6, seed=7)
    assert leaks.total == 0, killed.format_leaks(leaks)

    faults = bench_script("faults_b")
    rows = faults.garbage_rows()
    assert rows and all(r.met for r in rows), faults.table(rows)
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\n<!-- BEGIN faults -->\nother\n<!-- END faults -->\n")
    for _ in range(2):  # rewriting replaces the section, leaving the others alone
        write_section(doc, faults.SECTION, faults.render(rows))
    text = doc.read_text()
    assert (
        text.count(f"<!-- BEGIN {faults.SECTION} -->") == 1
        and "other" in text
        and "readers alive" in text
    )
