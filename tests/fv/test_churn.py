"""Endpoint and policy churn on a real Felix host leaves nothing behind: no routes on
removed interfaces, no cali- chains or IP sets beyond the baseline, no conntrack entries of
removed addresses; Felix stays alive. (RSS is reported, not asserted: bench/churn.py.)"""

from __future__ import annotations

import pytest

from .churn_host import baseline, churner, settle
from .conftest import Cluster

pytestmark = pytest.mark.fv
MIB = 1024 * 1024


def test_churn_leaves_nothing_behind(cluster: Cluster) -> None:
    host, before = baseline(cluster)
    rss_before = settle(host, before, timeout=10, quiet=2.0).rss
    run = churner(cluster, host, endpoints=12, policies=6).churn(seconds=20, rate=30)
    after = settle(host, before, timeout=60, quiet=5.0)
    print(
        f"churn: {run.changes} changes in {run.seconds:.1f} s ({run.rate:.1f}/s); Felix RSS "
        f"{rss_before / MIB:.1f} -> {after.rss / MIB:.1f} MiB; leftovers {after.leftovers}"
    )
    assert after.leftovers == {"routes": 0, "chains": 0, "ipsets": 0, "conntrack": 0}
    assert host.proc is not None and host.proc.poll() is None
