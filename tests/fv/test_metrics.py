"""Felix's Prometheus endpoint: Calico's metric names, per-policy deny counters from the
kernel's rule counters, drift repaired by the refresh, and every metric the shipped Grafana
dashboard queries."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from calico.model.policy import GlobalNetworkPolicy
from calico.testing.workloads import ping

from .conftest import Cluster, wait_until

DASHBOARD = Path(__file__).parents[2] / "docs" / "monitoring" / "grafana-felix.json"

pytestmark = pytest.mark.fv

_FETCH = "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"


def scrape(cluster: Cluster, netns: str) -> str:
    proc = cluster.ns.exec(
        netns, [sys.executable, "-c", _FETCH, "http://127.0.0.1:9091/metrics"], check=False
    )
    return proc.stdout


def metric(cluster: Cluster, netns: str, name: str) -> float | None:
    match = re.search(rf"^{name} ([0-9.e+]+)$", scrape(cluster, netns), re.MULTILINE)
    return float(match.group(1)) if match else None


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def dashboard_metrics() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(felix_[a-z0-9_]+)", e)}
    assert len(names) >= 15, names  # the parse found the queries
    return names


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


def test_calico_names_denies_drift_and_the_dashboard(cluster: Cluster) -> None:
    host = cluster.host(
        "h1", FELIX_PROMETHEUSMETRICSENABLED="true", FELIX_PROMETHEUSMETRICSHOST="127.0.0.1"
    )
    web = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    client = host.add_workload("cali1b", "198.19.0.2", "2001:db8:100::2")
    cluster.add_endpoint(host, web, "web", app="web")
    cluster.add_endpoint(host, client, "client", app="client")
    cluster.apply(
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "deny-client"},
            "spec": {
                "selector": "app == 'web'",
                "ingress": [
                    {
                        "action": "Deny",
                        "protocol": "ICMP",
                        "source": {"selector": "app == 'client'"},
                    },
                    {"action": "Allow"},
                ],
            },
        }
    )
    host.start()
    host.wait_ready()
    for _ in range(3):
        assert not ping(cluster.ns, client.netns, "198.19.0.1")
    denied = ("felix_denied_packets_total", frozenset({
        ("kind", "policy"), ("name", "default/deny-client"), ("direction", "ingress")
    }))  # fmt: skip
    wait_until(lambda: samples(scrape(cluster, host.netns)).get(denied, 0) >= 3, what="denies")
    got = samples(scrape(cluster, host.netns))
    before = got[denied]
    assert ping(cluster.ns, web.netns, "198.19.0.2")  # allowed traffic counts nothing
    assert samples(scrape(cluster, host.netns))[denied] == before
    assert got[("felix_iptables_restore_calls", frozenset())] >= 1
    assert got[("felix_iptables_restore_errors", frozenset())] == 0
    assert got[("felix_ipset_calls", frozenset())] >= 1
    assert got[("felix_cluster_num_workload_endpoints", frozenset())] == 2
    assert got[("felix_cluster_num_policies", frozenset())] == 1
    assert got[("felix_resyncs_started", frozenset())] >= 1
    assert ("felix_resyncs_started_total", frozenset()) not in got  # Calico's name, exactly

    # Someone deletes a rule in one of our chains: the 2 s refresh puts it back and says so.
    host.exec(["iptables", "-D", "cali-tw-cali1a", "1"])
    drift = ("felix_int_dataplane_drift_repaired", frozenset({("kind", "iptables")}))
    wait_until(lambda: samples(scrape(cluster, host.netns)).get(drift, 0) >= 1, what="repair")
    assert "changed outside Felix: cali-tw-cali1a" in host.log_since_start()
    assert not ping(cluster.ns, client.netns, "198.19.0.1")  # the deny is back in force

    served = {name for name, _ in got} | {n.removesuffix("_bucket") for n, _ in got}
    missing = dashboard_metrics() - served
    assert not missing, f"the dashboard queries metrics Felix does not serve: {sorted(missing)}"
