"""Runs bench/etcd_cluster_openstack.py for one round (its test, in a pytest of its own) and
checks what it hands the doc: four kills measured, the counts at their goal of 0, the section
written between its markers without touching the others."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from calico.testing.doc_sections import write_section

pytestmark = [pytest.mark.openstack, pytest.mark.fv, pytest.mark.timeout(600)]


def test_one_round_and_the_section(
    bench_script: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the DHCP agent runs in a netns")
    for tool in ("etcd", "ip", "dnsmasq"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")
    bench = bench_script("etcd_cluster_openstack")
    result = bench.run(rounds=1, progress=lambda _: None)
    assert result.passed, result.output[-6000:]
    kills = result.figures["kills"]
    assert [(k["component"], k["role"]) for k in kills] == [
        ("agent", "follower"), ("agent", "leader"), ("driver", "follower"), ("driver", "leader")
    ]  # fmt: skip
    assert all(0 < k["write"] < 60 and 0 < k["dhcp"] < 60 for k in kills)
    assert all(result.figures[key] == 0 for key in bench.COUNTS)
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\n<!-- BEGIN other -->\nother\n<!-- END other -->\n")
    for _ in range(2):  # rewriting replaces the section, leaving the others alone
        write_section(doc, bench.SECTION, bench.section(result))
    text = doc.read_text()
    assert text.count(f"<!-- BEGIN {bench.SECTION} -->") == 1 and "other" in text
    assert "the driver's etcd member SIGKILLed as the leader" in text and "FAILED" not in text
