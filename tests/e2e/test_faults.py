"""The fault suite (bench/faults.py) in short form: etcd down 5 s instead of 60. Asserts the
count goals only: no packet of the denied flow gets through, the established TCP stream loses
no byte and survives, no ping is lost across a BIRD, border bgpd or Felix restart, and an
allowed new connection works after Felix is back. The figures (seconds) are the script's."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_faults_short_form(bench_script: Callable[[str], ModuleType]) -> None:
    require_lab_tools()
    faults = bench_script("faults")
    report = faults.run(5.0, progress=lambda _msg: None, absent_timeout=60.0)
    assert [r.fault.split()[0] for r in report.rows] == ["BIRD", "FRR", "Felix", "etcd"]
    for row in report.rows:
        w = row.window
        assert w.knocks > 0 and w.knocks_through == 0, row
        assert w.stream_sent > 0 and (w.stream_lost, w.stream_error) == (0, ""), row
        assert w.pings > 0 and w.pings_lost == 0, row
        assert row.ok_after, row
    assert report.absent_start is not None  # within 60 s, not BIRD's 240 s recovery wait
    assert len(faults.table(report.rows).splitlines()) == 2 + len(report.rows)
