"""The fault suite (bench/faults.py) in short form: etcd down 5 s instead of 60, Felix killed
3 times. Asserts the count goals only: no packet of the denied flow gets through, the
established TCP stream loses no byte and survives, no ping is lost across a BIRD, border bgpd
or Felix restart, an allowed new connection works after Felix is back, every Felix kill landed
mid-apply (during an `ipset restore`, then an iptables-restore of the change to the policy
guarding the denied flow), the half-applied kernel held nothing neither before nor after the
change, and the kernel after the restarts is what a clean Felix writes. The figures (seconds)
are the script's."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_faults_short_form(bench_script: Callable[[str], ModuleType]) -> None:
    require_lab_tools()
    faults = bench_script("faults")
    report = faults.run(5.0, progress=print, absent_timeout=60.0, felix_kills=3)
    assert [r.fault.split()[0] for r in report.rows] == ["BIRD", "FRR", "Felix", "etcd"]
    for row in report.rows:
        w = row.window
        assert w.knocks > 0 and w.knocks_through == 0, row
        assert w.stream_sent > 0 and (w.stream_lost, w.stream_error) == (0, ""), row
        assert w.pings > 0 and w.pings_lost == 0, row
        assert row.ok_after, row
    felix = report.rows[2]
    assert felix.mid_apply is not None and felix.mid_apply[0] == felix.mid_apply[1] == 3, felix
    assert "ipset restore" in felix.mid_apply[2] and "tables-" in felix.mid_apply[2], felix
    assert felix.stray == 0, felix  # half-applied, never anything neither old nor new
    assert felix.repaired is not None and felix.repaired[0], felix
    assert report.absent_start is not None  # within 60 s, not BIRD's 240 s recovery wait
    assert len(faults.table(report.rows).splitlines()) == 2 + len(report.rows)
