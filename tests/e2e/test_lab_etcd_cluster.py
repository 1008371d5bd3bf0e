"""A 4-host lab on a 3-member etcd cluster (bench/etcd_cluster.py, one round): the member
host-2's Felix is connected to, then the leader, SIGKILLed; calicoctl writes succeed and reach
the dataplane after each kill. Asserts the counts only: every host's Felix started on the member
its endpoint order puts first, a CNI ADD/DEL works while a member is down, no allowed probe
failed, no component restarted, no watcher re-listed (the watches resumed on another member).
The figures (seconds) are the script's."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_lab_survives_watched_member_and_leader_kills(
    bench_script: Callable[[str], ModuleType],
) -> None:
    require_lab_tools()
    report = bench_script("etcd_cluster").run(1, progress=print)
    assert report.placement == report.expected, report
    assert [k.victim for k in report.kills] == ["watched", "leader"]
    assert report.probes > 0 and report.probes_failed == 0, report
    assert report.restarts == 0, report
    assert report.relists == 0, report
    assert report.resumes > 0, report  # host-2's Felix's watches did break, and resumed
    assert all(k.cni for k in report.kills), report
