"""A 2-host lab on a 3-member etcd cluster (bench/etcd_cluster.py, one round): a follower, then
the leader, SIGKILLed; calicoctl writes succeed and reach the dataplane after each kill.
Asserts the counts only: a CNI ADD/DEL works while a member is down, no allowed probe failed, no component restarted, no watcher re-listed
(the watches resumed on another member). The figures (seconds) are the script's."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_lab_survives_follower_and_leader_kills(bench_script: Callable[[str], ModuleType]) -> None:
    require_lab_tools()
    report = bench_script("etcd_cluster").run(1, progress=print)
    assert [k.victim for k in report.kills] == ["follower", "leader"]
    assert report.probes > 0 and report.probes_failed == 0, report
    assert report.restarts == 0, report
    assert report.relists == 0, report
    assert report.resumes > 0, report  # the hosts' watches did break, and resumed
    assert all(k.cni for k in report.kills), report
