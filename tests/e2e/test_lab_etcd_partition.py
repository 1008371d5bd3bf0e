"""A 3-member lab etcd whose follower, then leader, is cut off from its peers (nftables in
its namespace) while a watch and a Syncer are open on it (bench/etcd_partition.py, one
round). Asserts: the watch resumed on another member and delivered the majority's first write
within 20 s of the cut (about 2 s at load 13 with the lab's 500 ms election timeout; the
margin is for a loaded machine), every revision the majority wrote exactly once, the Syncer
had that write and never re-listed, and a watch that does not require a leader delivered
none of them (what the client did before)."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

from .conftest import require_lab_tools


def test_a_watch_on_a_cut_off_member_resumes_on_the_majority(
    bench_script: Callable[[str], ModuleType],
) -> None:
    require_lab_tools()
    cuts = bench_script("etcd_partition").run(1, progress=print)
    assert [c.victim for c in cuts] == ["follower", "leader"]
    for cut in cuts:
        assert not math.isnan(cut.resumed), cut  # the watch broke, and resumed elsewhere
        assert cut.seen < 20.0 and cut.syncer_seen < 20.0, cut
        assert cut.syncer_relists == 0, cut
        assert cut.written > 0 and cut.missed == 0 and cut.repeated == 0, cut
        assert cut.plain_events == 0, cut
