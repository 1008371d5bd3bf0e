"""Felix's Prometheus endpoint reports active endpoints, policies, IP sets and applies."""

from __future__ import annotations

import re
import sys

import pytest

from calico.model.policy import GlobalNetworkPolicy

from .conftest import Cluster, wait_until

pytestmark = pytest.mark.fv

_FETCH = "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"


def metric(cluster: Cluster, netns: str, name: str) -> float | None:
    proc = cluster.ns.exec(
        netns, [sys.executable, "-c", _FETCH, "http://127.0.0.1:9091/metrics"], check=False
    )
    match = re.search(rf"^{name} ([0-9.e+]+)$", proc.stdout, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_metrics_follow_the_dataplane(cluster: Cluster) -> None:
    host = cluster.host(
        "h1", FELIX_PROMETHEUSMETRICSENABLED="true", FELIX_PROMETHEUSMETRICSHOST="127.0.0.1"
    )
    a = host.add_workload("cali1a", "198.19.0.1")
    cluster.add_endpoint(host, a, "a", app="web")
    cluster.apply(
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "selector": "app == 'web'",
                "ingress": [{"action": "Allow", "source": {"selector": "app == 'db'"}}],
            },
        }
    )
    host.start()
    wait_until(
        lambda: metric(cluster, host.netns, "felix_active_local_endpoints") == 1,
        what="endpoint gauge",
    )
    assert metric(cluster, host.netns, "felix_active_local_policies") == 1
    # Per family: one selector set, plus the IP pool sets all-ipam-pools and masq-ipam-pools
    # that Felix always keeps (as Calico's felix_ipsets_calico counts them).
    assert metric(cluster, host.netns, "felix_ipsets_calico") == 6
    applies = metric(cluster, host.netns, "felix_int_dataplane_apply_time_seconds_count")
    assert applies is not None and applies >= 1
    assert metric(cluster, host.netns, "felix_resync_state") == 3
    cluster.delete(GlobalNetworkPolicy, "p")
    wait_until(
        lambda: metric(cluster, host.netns, "felix_active_local_policies") == 0, what="policy gauge"
    )
